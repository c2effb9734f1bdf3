package cli

import (
	"runtime/debug"
	"strings"
)

// Version returns what the binary's build information says of its
// version: the module version (a release tag, or "(devel)" for a build
// from a checkout) with the VCS revision and "-dirty" for uncommitted
// changes when the build recorded them, e.g. "(devel) 437f3b3c1a2b-dirty".
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev string
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" || strings.Contains(v, rev[:min(12, len(rev))]) {
		return v
	}
	v += " " + rev[:min(12, len(rev))]
	if dirty {
		v += "-dirty"
	}
	return v
}
