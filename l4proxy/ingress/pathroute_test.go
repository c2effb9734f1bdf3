package ingress

import "testing"

func TestSameHost(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"wiki.test", "wiki.test", true},
		{"WIKI.test:8080", "wiki.TEST", true},
		{"wiki.test.", "wiki.test", true},
		{"[fd00::1]:80", "fd00::1", true},
		{"wiki.test", "wiki.test.evil", false},
		{"wiki.test", "wikI.tesu", false},
		{"", "", false},
		{":80", "", false},
		{"\u212aey.test", "key.test", false}, // Kelvin sign: ASCII case only
	} {
		if got := SameHost(tc.a, tc.b); got != tc.want {
			t.Errorf("SameHost(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}
