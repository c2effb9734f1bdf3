package console

import (
	"html/template"
	"net/http"
)

// funcs are the templates' helpers.
var funcs = template.FuncMap{}

func (s *Server) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		st, err := s.opts.Backend.Status()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		s.render(w, r, http.StatusOK, "overview", "Overview", st)
	})
}
