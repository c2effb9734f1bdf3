package edgeconfig

import (
	"strings"
	"testing"

	"github.com/onramp-net/onramp/l3router/wg"
)

// TestL3Handshakes: l3.handshakes has the device's defaults, takes each
// value, and names the field of a bad one.
func TestL3Handshakes(t *testing.T) {
	d := Default().L3.Handshakes.Limits()
	want := wg.HandshakeLimits{PerSecond: 2000, PerSourcePerSecond: 20, PerSourceBurst: 5, MaxSources: 16384}
	if d != want {
		t.Errorf("default handshake limits %+v, want %+v", d, want)
	}
	c, err := Parse([]byte(`
l3:
  listen: ":51820"
  handshakes: {per_second: 500, per_source_per_second: 10, per_source_burst: 2, max_sources: 4096}
`))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.L3.Handshakes.Limits(), (wg.HandshakeLimits{PerSecond: 500, PerSourcePerSecond: 10, PerSourceBurst: 2, MaxSources: 4096}); got != want {
		t.Errorf("limits %+v, want %+v", got, want)
	}
	// A missing or zero value is the default.
	c, err = Parse([]byte("l3: {handshakes: {per_second: 0, max_sources: 100}}"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.L3.Handshakes; got.PerSecond != 2000 || got.PerSourceBurst != 5 || got.MaxSources != 100 {
		t.Errorf("limits %+v, want the defaults but max_sources 100", got)
	}
	for _, c := range []struct{ yaml, want string }{
		{"l3: {handshakes: {per_second: -1}}", "l3.handshakes.per_second: -1 is negative"},
		{"l3: {handshakes: {per_source_per_second: -5}}", "l3.handshakes.per_source_per_second: -5 is negative"},
		{"l3: {handshakes: {per_source_burst: 2000000}}", "l3.handshakes.per_source_burst: 2000000 is more than 1000000"},
		{"l3: {handshakes: {max_sources: 2000000}}", "l3.handshakes.max_sources: 2000000 is more than 1048576"},
		{"l3: {handshakes: {per_second: 10}}", "l3.handshakes.per_source_per_second: 20 is above l3.handshakes.per_second (10)"},
		{"l3: {handshakes: {perSecond: 100}}", "field perSecond not found"},
	} {
		_, err := Parse([]byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.yaml, err, c.want)
		}
	}
}
