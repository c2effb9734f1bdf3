package cli

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

const rev = "2c133993ecc04840785374fb14892077d0ae06b5"

// A plain go build: the module version and the VCS settings the
// toolchain recorded.
func TestBuildFromToolchainRecord(t *testing.T) {
	bi := &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: rev}, {Key: "vcs.time", Value: "2026-12-04T10:00:00Z"}, {Key: "vcs.modified", Value: "true"},
	}}
	b := build(bi, "", "", "")
	if got, want := b.short(), "(devel) 2c133993ecc0-dirty"; got != want {
		t.Errorf("Version = %q, want %q", got, want)
	}
	want := "commit:  " + rev + " (modified)\n" +
		"go:      " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + "\n" +
		"built:   unknown (not built by make; committed 2026-12-04T10:00:00Z)\n"
	if got := b.String(); got != want {
		t.Errorf("--version lines:\n%s\nwant:\n%s", got, want)
	}

	// A pseudo-version already names the revision.
	bi.Main.Version = "v0.0.0-20261204100000-2c133993ecc0+dirty"
	if got := build(bi, "", "", "").short(); got != bi.Main.Version {
		t.Errorf("Version = %q, want the pseudo-version %q", got, bi.Main.Version)
	}
	// Nothing recorded at all.
	if b := build(nil, "", "", ""); b.short() != "(devel)" || !strings.Contains(b.String(), "commit:  unknown\n") ||
		!strings.Contains(b.String(), "built:   unknown\n") {
		t.Errorf("no build information: Version %q, lines:\n%s", b.short(), b.String())
	}
}

// make build: what -ldflags stamped wins over the toolchain's record.
func TestBuildStamped(t *testing.T) {
	bi := &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "ffff"}}}
	b := build(bi, "v1.2.0-4-g2c13399-dirty", rev, "2026-12-05T07:00:00Z")
	if b.short() != "v1.2.0-4-g2c13399-dirty" || b.Commit != rev || !b.Modified || b.Date != "2026-12-05T07:00:00Z" {
		t.Errorf("stamped build = %+v, Version %q", b, b.short())
	}
	if !strings.Contains(b.String(), "built:   2026-12-05T07:00:00Z\n") {
		t.Errorf("--version lines:\n%s", b.String())
	}
}

// The template prints the values as they are, even one that looks like
// template syntax.
func TestVersionTemplate(t *testing.T) {
	b := BuildInfo{Version: "v1", Commit: `{{.Name}}"\`, GoVersion: "go1", Platform: "linux/amd64", Date: "today"}
	root := &cobra.Command{Use: "edge", Version: b.Version, Run: func(*cobra.Command, []string) {}}
	root.SetVersionTemplate(versionTemplate(b))
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"--version"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	want := "edge version v1\ncommit:  {{.Name}}\"\\\ngo:      go1 linux/amd64\nbuilt:   today\n"
	if out.String() != want {
		t.Errorf("--version printed:\n%q\nwant:\n%q", out.String(), want)
	}
}

// The real binaries, built by make build and by a plain go build, print what git and the toolchain say of the build.
func TestVersionFlag(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the edge and connector binaries")
	}
	root := repoRoot(t)
	git := func(args ...string) string {
		out, err := exec.Command("git", append([]string{"-C", root}, args...)...).Output()
		if err != nil {
			t.Fatalf("git %s: %v", strings.Join(args, " "), err)
		}
		return strings.TrimSpace(string(out))
	}
	goVersion := strings.TrimSpace(run(t, root, "go", "env", "GOVERSION"))

	t.Run("make build", func(t *testing.T) {
		dir := t.TempDir()
		run(t, root, "make", "-s", "build", "BIN="+dir, "CMDS=cmd/edge cmd/connector")
		describe, head := git("describe", "--tags", "--always", "--dirty"), git("rev-parse", "HEAD")
		for _, name := range []string{"edge", "connector"} {
			out := run(t, root, filepath.Join(dir, name), "--version")
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if len(lines) != 4 {
				t.Fatalf("%s --version: want 4 lines, got:\n%s", name, out)
			}
			wantCommit := "commit:  " + head
			if strings.HasSuffix(describe, "-dirty") {
				wantCommit += " (modified)"
			}
			for i, want := range []string{name + " version " + describe, wantCommit,
				"go:      " + goVersion + " " + runtime.GOOS + "/" + runtime.GOARCH} {
				if lines[i] != want {
					t.Errorf("%s --version line %d = %q, want %q", name, i+1, lines[i], want)
				}
			}
			built, err := time.Parse(time.RFC3339, strings.TrimPrefix(lines[3], "built:   "))
			if err != nil || time.Since(built) > 10*time.Minute || time.Until(built) > time.Minute {
				t.Errorf("%s --version: %q is not the build time (now %s): %v", name, lines[3], time.Now().UTC().Format(time.RFC3339), err)
			}
		}
		// Installed as onramp-NAME, the binary goes by that name.
		installed := filepath.Join(dir, "onramp-connector")
		if err := os.Rename(filepath.Join(dir, "connector"), installed); err != nil {
			t.Fatal(err)
		}
		if out := run(t, root, installed, "--version"); !strings.HasPrefix(out, "onramp-connector version "+describe+"\n") {
			t.Errorf("onramp-connector --version:\n%s", out)
		}
		if out := run(t, root, installed, "--help"); !strings.Contains(out, "\n  onramp-connector [command]\n") {
			t.Errorf("onramp-connector --help does not name onramp-connector:\n%s", out)
		}
	})

	t.Run("go build", func(t *testing.T) {
		dir := t.TempDir()
		// -buildvcs=true: GOFLAGS may turn it off.
		run(t, root, "go", "build", "-buildvcs=true", "-o", dir+"/", "./cmd/connector")
		bin := filepath.Join(dir, "connector")
		out := run(t, root, bin, "--version")
		// What the toolchain recorded, read by go version -m.
		rec := map[string]string{}
		for _, l := range strings.Split(run(t, root, "go", "version", "-m", bin), "\n") {
			f := strings.Fields(l)
			switch {
			case len(f) >= 3 && f[0] == "mod":
				rec["mod"] = f[2]
			case len(f) >= 2 && f[0] == "build" && strings.HasPrefix(f[1], "vcs."):
				k, v, _ := strings.Cut(f[1], "=")
				rec[k] = v
			}
		}
		if fi, err := os.Stat(filepath.Join(root, ".git")); err == nil && fi.IsDir() && rec["vcs.revision"] != git("rev-parse", "HEAD") {
			t.Errorf("go version -m says vcs.revision %q, HEAD is %s", rec["vcs.revision"], git("rev-parse", "HEAD"))
		} else if rec["vcs.revision"] == "" {
			// The toolchain finds a repository only where .git is a
			// directory, not in a git worktree.
			t.Logf("no VCS information recorded (a git worktree?): checking the output without it")
		}
		want := "connector version " + rec["mod"]
		commit, built := "commit:  unknown", "built:   unknown"
		if r := rec["vcs.revision"]; r != "" {
			if !strings.Contains(rec["mod"], r[:12]) {
				want += " " + r[:12]
				if rec["vcs.modified"] == "true" {
					want += "-dirty"
				}
			}
			commit = "commit:  " + r
			if rec["vcs.modified"] == "true" {
				commit += " (modified)"
			}
			built = "built:   unknown (not built by make; committed " + rec["vcs.time"] + ")"
		}
		want += "\n" + commit + "\ngo:      " + goVersion + " " + runtime.GOOS + "/" + runtime.GOARCH + "\n" + built + "\n"
		if out != want {
			t.Errorf("connector --version:\n%s\nwant:\n%s", out, want)
		}
	})
}

// repoRoot is the module's directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	gomod := strings.TrimSpace(run(t, ".", "go", "env", "GOMOD"))
	if gomod == "" || gomod == os.DevNull {
		t.Fatal("go env GOMOD: not in the module")
	}
	return filepath.Dir(gomod)
}

// run runs a command in dir and returns its standard output; it fails the
// test if the command fails.
func run(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}
