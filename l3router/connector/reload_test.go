package connector

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestRestartOnly(t *testing.T) {
	run := testConfig(t)
	c := *run
	c.Addresses = []netip.Prefix{run.Addresses[1], run.Addresses[0]} // the same, in another order
	c.Routes = nil
	c.Edge.Endpoint = "198.18.20.2:51820"
	if d := restartOnly(run, &c); len(d) != 0 {
		t.Errorf("live changes taken for restart-only: %v", d)
	}
	c.MTU, c.ListenPort, c.Interface = 1300, 51999, "onr9"
	c.Addresses = c.Addresses[:1]
	c.PrivateKey = testConfig(t).PrivateKey
	if d := strings.Join(restartOnly(run, &c), ","); d != "privateKey,interface,mtu,listenPort,addresses" {
		t.Errorf("restart-only fields %q", d)
	}
}

func TestDiffPrefixes(t *testing.T) {
	a := []netip.Prefix{pfx("198.18.96.0/20"), pfx("198.18.140.0/24")}
	b := []netip.Prefix{pfx("198.18.150.0/24"), pfx("198.18.96.0/20")}
	added, removed := diffPrefixes(a, b)
	if !slices.Equal(added, []netip.Prefix{pfx("198.18.150.0/24")}) || !slices.Equal(removed, []netip.Prefix{pfx("198.18.140.0/24")}) {
		t.Errorf("added %v removed %v", added, removed)
	}
}

func TestReloadedString(t *testing.T) {
	var r Reloaded
	if r.Changed() || r.String() != "nothing changed" {
		t.Errorf("empty: %v %q", r.Changed(), r.String())
	}
	r.RoutesAdded = []netip.Prefix{pfx("198.18.140.0/24")}
	r.Edge = true
	if !r.Changed() || r.String() != "routes added 198.18.140.0/24; edge peer updated" {
		t.Errorf("%q", r.String())
	}
}
