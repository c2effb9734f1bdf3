package diag

import (
	"archive/tar"
	"compress/gzip"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	b := &Bundle{Secrets: []string{"c2VjcmV0LXNlY3JldC1zZWNyZXQ="}}
	in := `name: site
privateKey: "gIhOr0Ud9sJ2h0H4+cXo5E0hTkVDDS3ccM2yi/KSdVc="
privateKeyFile: /etc/onramp/l3.key
registry:
  etcd:
    password: hunter2hunter2
    password_file: /etc/onramp/etcd.pw
  - token: abc
note: the token onr1_AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMk is pasted here
other: c2VjcmV0LXNlY3JldC1zZWNyZXQ=
[Interface]
PrivateKey = gIhOr0Ud9sJ2h0H4+cXo5E0hTkVDDS3ccM2yi/KSdVc=
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg
-----END PRIVATE KEY-----
`
	out := string(b.Redact([]byte(in)))
	for _, secret := range []string{"gIhOr0Ud9sJ2h0H4", "hunter2", "token: abc", "onr1_AQID", "c2VjcmV0", "MIGHAgEAMBMG"} {
		if strings.Contains(out, secret) {
			t.Errorf("%q survived redaction:\n%s", secret, out)
		}
	}
	for _, kept := range []string{"privateKeyFile: /etc/onramp/l3.key", "password_file: /etc/onramp/etcd.pw", "name: site", "privateKey: REDACTED", "onr1_REDACTED"} {
		if !strings.Contains(out, kept) {
			t.Errorf("%q lost:\n%s", kept, out)
		}
	}
}

func TestBundleWrite(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "l3.yml")
	if err := os.WriteFile(cfg, []byte("privateKey: AAAAsecretAAAA\nmtu: 1420\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := &Bundle{Prefix: "x/"}
	b.AddFile("config/l3.yml", cfg)
	b.AddFile("config/missing.yml", filepath.Join(dir, "missing.yml"))
	b.Add("diag.txt", []byte("OK a: b.\n"))
	path := filepath.Join(dir, "b.tar.gz")
	if err := b.Write(path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("bundle mode: %v %v", fi, err)
	}
	f, _ := os.Open(path)
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	got := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		got[h.Name] = string(data)
	}
	if s := got["x/config/l3.yml"]; s != "privateKey: REDACTED\nmtu: 1420\n" {
		t.Errorf("l3.yml in the bundle: %q", s)
	}
	if s := got["x/config/missing.yml"]; !strings.HasPrefix(s, "not included: ") {
		t.Errorf("a missing file: %q; want a note saying why", s)
	}
	if got["x/diag.txt"] != "OK a: b.\n" {
		t.Errorf("diag.txt: %q", got["x/diag.txt"])
	}
}

func TestJournalUnknownName(t *testing.T) {
	if s := string(Journal(t.Context(), "", 10)); !strings.Contains(s, "--name") {
		t.Errorf("no unit: %q; want it to say to give --name", s)
	}
}

func TestParseProcAddr(t *testing.T) {
	for in, want := range map[string]string{
		"0100007F:1F90":                         "127.0.0.1:8080",
		"00000000:1E94":                         "0.0.0.0:7828",
		"00000000000000000000000000000000:1E94": "[::]:7828",
		"0000FDFD000000000000000001000000:0050": "[fdfd::1]:80",
		"0000000000000000FFFF00000100007F:0016": "127.0.0.1:22", // IPv4-mapped
	} {
		got, err := parseProcAddr(in)
		if err != nil || got.String() != want {
			t.Errorf("parseProcAddr(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
}

func TestListeners(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	free, _ := net.Listen("tcp", "127.0.0.1:0")
	freeAddr := free.Addr().String()
	free.Close()
	ls := []Listener{
		{Name: "a", Network: "tcp", Addr: ln.Addr().String()},
		{Name: "b", Network: "udp", Addr: ":" + strings.Split(pc.LocalAddr().String(), ":")[1]},
		{Name: "c", Network: "tcp", Addr: freeAddr},
	}
	me := os.Getpid()
	res := Listeners("/proc", ls, me)
	if res[0].Status != OK || !strings.Contains(res[0].Detail, "bound by the running edge") {
		t.Errorf("this process as the edge, tcp: %s", res[0].Line())
	}
	if res[1].Status != OK {
		t.Errorf("this process as the edge, udp on all addresses: %s", res[1].Line())
	}
	if res[2].Status != Fail || !strings.Contains(res[2].Detail, "not bound, although the edge runs") {
		t.Errorf("free port, edge running: %s", res[2].Line())
	}
	// Another pid as the edge: this process is "another process".
	res = Listeners("/proc", ls[:1], me+1<<20)
	if res[0].Status != Fail || !strings.Contains(res[0].Detail, "pid "+strconv.Itoa(me)) || !strings.Contains(res[0].Fix, "change a in edge.yml") {
		t.Errorf("held by another process: %s", res[0].Line())
	}
	res = Listeners("/proc", ls[2:], 0)
	if res[0].Status != Warn || !strings.Contains(res[0].Detail, "the edge is not running") {
		t.Errorf("free port, no edge: %s", res[0].Line())
	}
}
