package edgeconfig

import (
	"strings"
	"testing"

	"github.com/onramp-net/onramp/cmd/edge/console/password"
)

// TestConsole: listen.console and console: are checked, naming the field.
func TestConsole(t *testing.T) {
	hash, err := password.HashWith([]byte("a long password"), password.Params{Memory: 64, Time: 1, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	q := func(s string) string { return `"` + s + `"` }
	for _, ok := range []string{
		"listen: {console: \"127.0.0.1:8844\"}\n",
		"listen: {console: \"[::1]:8844\"}\nconsole: {password_hash: " + q(hash) + "}\n",
		"listen: {console: \"localhost:8844\"}\nconsole: {tls_cert: c.pem, tls_key: k.pem}\n",
		"listen: {console: \"[::]:8844\"}\nconsole: {password_hash: " + q(hash) + ", tls_cert: c.pem, tls_key: k.pem}\n",
		"console: {password_hash: " + q(hash) + "}\n", // off, but set up
	} {
		c, err := Parse([]byte(ok))
		if err != nil {
			t.Errorf("%s: %v", ok, err)
			continue
		}
		if strings.Contains(ok, "password_hash") && c.Console.PasswordHash != hash {
			t.Errorf("%s: hash %q", ok, c.Console.PasswordHash)
		}
	}
	for _, bad := range []struct{ body, want string }{
		{"listen: {console: \"8844\"}\n", "listen.console"},
		{"listen: {console: \"127.0.0.1:99999\"}\n", "listen.console"},
		{"console: {tls_cert: c.pem}\n", "console.tls_cert and console.tls_key: set both"},
		{"console: {tls_key: k.pem}\n", "console.tls_cert and console.tls_key: set both"},
		{"console: {password_hash: hunter2}\n", "console.password_hash: want an argon2id hash"},
		{"console: {password_hash: \"$argon2id$v=19$m=9999999,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5\"}\n", "console.password_hash: argon2id memory"},
		{"listen: {console: \"0.0.0.0:8844\"}\n", "listen.console 0.0.0.0:8844 is not a loopback address: it needs console.tls_cert and console.tls_key and console.password_hash"},
		{"listen: {console: \":8844\"}\nconsole: {password_hash: " + q(hash) + "}\n", "it needs console.tls_cert and console.tls_key (or"},
		{"listen: {console: \"198.18.0.1:8844\"}\nconsole: {tls_cert: c.pem, tls_key: k.pem}\n", "it needs console.password_hash"},
	} {
		_, err := Parse([]byte(bad.body))
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: %v; want an error with %q", bad.body, err, bad.want)
		}
	}
}
