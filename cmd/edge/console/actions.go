package console

// The actions: create, rotate and delete a tunnel; add and remove L3
// clients, remove L3 connectors. Each is a POST (auth.go checks its CSRF
// token and origin) that calls the Backend: the admin API's code, as the
// CLI runs it. A token or a private key is shown once, on the page that
// answers the POST, and kept nowhere.

import (
	"bytes"
	"encoding/base64"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strings"

	qrcode "github.com/skip2/go-qrcode"

	"github.com/onramp-net/onramp/l3router/l3config"
)

// maxForm bounds an action's form body: a name, groups and the CSRF token.
const maxForm = 16 << 10

func (s *Server) actionRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /tunnels", s.createTunnel)
	mux.HandleFunc("POST /tunnels/{name}/rotate", s.rotateTunnel)
	mux.HandleFunc("POST /tunnels/{name}/delete", s.deleteTunnel)
	mux.HandleFunc("POST /l3/clients", s.addClient)
	mux.HandleFunc("POST /l3/clients/{name}/delete", s.removeL3("client"))
	mux.HandleFunc("POST /l3/connectors/{name}/delete", s.removeL3("connector"))
}

// tokenData is the page of a new token.
type tokenData struct {
	Name    string
	Rotated bool
	Token   string
	Config  string
}

// formValue is the form's field, trimmed; "" if the body is too large or
// not a form.
func formValue(w http.ResponseWriter, r *http.Request, field string) string {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	return strings.TrimSpace(r.PostFormValue(field))
}

func (s *Server) createTunnel(w http.ResponseWriter, r *http.Request) {
	name := formValue(w, r, "name")
	if name == "" {
		s.tunnelsPage(w, r, http.StatusBadRequest, tunnelsData{Err: "a tunnel needs a name: lowercase letters, digits and '-'"})
		return
	}
	t, err := s.opts.Backend.CreateTunnel(name)
	if err != nil {
		s.tunnelsPage(w, r, statusOf(err), tunnelsData{Err: "create tunnel " + name + ": " + err.Error()})
		return
	}
	s.log.Info("console: tunnel created", "name", t.Name)
	s.tokenPage(w, r, t.Name, t.Token, false)
}

func (s *Server) rotateTunnel(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	t, err := s.opts.Backend.RotateTunnel(name)
	if err != nil {
		s.tunnelsPage(w, r, statusOf(err), tunnelsData{Err: "rotate tunnel " + name + ": " + err.Error()})
		return
	}
	s.log.Info("console: tunnel token rotated", "name", t.Name)
	s.tokenPage(w, r, t.Name, t.Token, true)
}

// tokenPage shows a tunnel's new token once with how to run a connector.
func (s *Server) tokenPage(w http.ResponseWriter, r *http.Request, name, token string, rotated bool) {
	conf, err := s.opts.Backend.ConnectorConfig(name, token)
	if err != nil {
		// The token is made: show it even without the config.
		conf = "(no connector config: " + err.Error() + ")"
	}
	w.Header().Set("Cache-Control", "no-store")
	s.render(w, r, http.StatusOK, "token", "Tunnel "+name, tokenData{Name: name, Rotated: rotated, Token: token, Config: conf})
}

func (s *Server) deleteTunnel(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if _, err := s.opts.Backend.DeleteTunnel(name); err != nil {
		s.tunnelsPage(w, r, statusOf(err), tunnelsData{Err: "delete tunnel " + name + ": " + err.Error()})
		return
	}
	s.log.Info("console: tunnel deleted", "name", name)
	http.Redirect(w, r, "/tunnels?deleted="+url.QueryEscape(name), http.StatusSeeOther)
}

// clientData is the page of a new L3 client.
type clientData struct {
	Name   string
	Groups []string
	Config string
	// QR is the config (less its comments, as `edge l3 client add --qr`
	// draws it) as a PNG QR code, a data: URL.
	QR template.URL
}

func (s *Server) addClient(w http.ResponseWriter, r *http.Request) {
	name := formValue(w, r, "name")
	var groups []string
	for g := range strings.SplitSeq(r.PostFormValue("groups"), ",") {
		if g = strings.TrimSpace(g); g != "" {
			groups = append(groups, g)
		}
	}
	if name == "" {
		s.l3Page(w, r, http.StatusBadRequest, l3Data{Err: "a client needs a name: lowercase letters, digits and '-'"})
		return
	}
	conf, err := s.opts.Backend.AddClient(name, groups)
	if err != nil {
		s.l3Page(w, r, statusOf(err), l3Data{Err: "add client " + name + ": " + err.Error()})
		return
	}
	s.log.Info("console: l3 client added", "name", name, "groups", groups)
	qr, err := qrPNG(conf)
	if err != nil {
		// The client is added: show its config even without the code.
		s.log.Warn("console: qr code", "name", name, "err", err)
	}
	w.Header().Set("Cache-Control", "no-store")
	s.render(w, r, http.StatusOK, "client", "L3 client "+name, clientData{Name: name, Groups: groups, Config: string(conf), QR: qr})
}

// qrPNG is conf's QR code as a data: URL of a PNG.
func qrPNG(conf []byte) (template.URL, error) {
	q, err := qrcode.New(l3config.QRText(conf), qrcode.Low)
	if err != nil {
		return "", errors.New("qr code: " + err.Error())
	}
	// Modules of 4 pixels and the quiet zone around: a phone reads it
	// off a screen at arm's length.
	png, err := q.PNG(-4)
	if err != nil {
		return "", errors.New("qr code: " + err.Error())
	}
	var b bytes.Buffer
	b.WriteString("data:image/png;base64,")
	b.WriteString(base64.StdEncoding.EncodeToString(png))
	return template.URL(b.String()), nil
}

// removeL3 is POST /l3/KINDs/NAME/delete.
func (s *Server) removeL3(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if err := s.opts.Backend.RemoveL3(kind, name); err != nil {
			s.l3Page(w, r, statusOf(err), l3Data{Err: "remove " + kind + " " + name + ": " + err.Error()})
			return
		}
		s.log.Info("console: l3 "+kind+" removed", "name", name)
		http.Redirect(w, r, "/l3?removed="+url.QueryEscape(kind+" "+name), http.StatusSeeOther)
	}
}
