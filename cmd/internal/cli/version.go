package cli

import (
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
)

// What `make build` and `make package` stamp into the binaries with
// -ldflags "-X github.com/onramp-net/onramp/cmd/internal/cli.version=..."
// (packaging/package.sh ldflags prints the flags). A plain `go build`
// leaves them empty, and [Build] falls back on the build information the
// Go toolchain records.
var (
	version string // git describe --tags --always --dirty, e.g. v0.3.0-5-g2c13399-dirty
	commit  string // git rev-parse HEAD
	date    string // build time, RFC 3339 in UTC
)

// BuildInfo says which build a binary is.
type BuildInfo struct {
	// Version is what git describe said at build time, or, for a plain
	// go build, the module version the toolchain recorded: a release tag,
	// a pseudo-version from the VCS ("v0.0.0-20261205072520-2c13399d1a2b+dirty")
	// or "(devel)".
	Version string
	// Commit is the full VCS revision; "" when unknown.
	Commit string
	// Modified is true when the tree had uncommitted changes.
	Modified bool
	// GoVersion and Platform are the toolchain's and the target's,
	// e.g. "go1.26.8" and "linux/amd64".
	GoVersion, Platform string
	// Date is the build time (RFC 3339, UTC) when the build stamped it;
	// else "".
	Date string
	// CommitDate is the commit's time from the VCS information of a plain
	// go build; "" when unknown.
	CommitDate string

	stamped bool // Version is git describe's, from -ldflags
}

// Build returns the binary's build information: what the build stamped
// with -ldflags, else what debug.ReadBuildInfo records (module version,
// vcs.revision, vcs.time, vcs.modified).
func Build() BuildInfo {
	bi, _ := debug.ReadBuildInfo()
	return build(bi, version, commit, date)
}

// build is [Build] from the toolchain's record bi (nil if none) and the
// stamped values.
func build(bi *debug.BuildInfo, version, commit, date string) BuildInfo {
	b := BuildInfo{GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi != nil {
		b.Version = bi.Main.Version
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Commit = s.Value
			case "vcs.time":
				b.CommitDate = s.Value
			case "vcs.modified":
				b.Modified = s.Value == "true"
			}
		}
	}
	if b.Version == "" {
		b.Version = "(devel)"
	}
	if version != "" {
		b.Version, b.stamped = version, true
		b.Modified = strings.HasSuffix(version, "-dirty")
	}
	if commit != "" {
		b.Commit = commit
	}
	b.Date = date
	return b
}

// Version returns the binary's version in one word or two: what git
// describe said at build time ("v0.3.0-5-g2c13399-dirty"), or for a plain
// go build the module version with the VCS revision and "-dirty" for
// uncommitted changes, unless the version already names the revision
// ("(devel) 437f3b3c1a2b-dirty").
func Version() string { return Build().short() }

// short is [Version] for b.
func (b BuildInfo) short() string {
	rev := b.Commit[:min(12, len(b.Commit))]
	if b.stamped || rev == "" || strings.Contains(b.Version, rev) {
		return b.Version
	}
	v := b.Version + " " + rev
	if b.Modified {
		v += "-dirty"
	}
	return v
}

// String is the --version text after the first line: commit, Go
// version and build date, one a line.
func (b BuildInfo) String() string {
	var s strings.Builder
	s.WriteString("commit:  ")
	if b.Commit == "" {
		s.WriteString("unknown")
	} else {
		s.WriteString(b.Commit)
		if b.Modified {
			s.WriteString(" (modified)")
		}
	}
	s.WriteString("\ngo:      " + b.GoVersion + " " + b.Platform + "\nbuilt:   ")
	switch {
	case b.Date != "":
		s.WriteString(b.Date)
	case b.CommitDate != "":
		s.WriteString("unknown (not built by make; committed " + b.CommitDate + ")")
	default:
		s.WriteString("unknown")
	}
	s.WriteString("\n")
	return s.String()
}

// versionTemplate is cobra's --version template for b: "NAME version
// VERSION" and b's lines. The values are quoted as template strings, so
// nothing in them is read as template syntax.
func versionTemplate(b BuildInfo) string {
	return `{{.Name}} version {{.Version}}{{"\n"}}{{` + strconv.Quote(b.String()) + `}}`
}
