package packaging_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/onramp-net/onramp/cmd/edge/edgeconfig"
	"github.com/onramp-net/onramp/l4proxy/ingress"
	"github.com/onramp-net/onramp/packaging/systemd"
	"github.com/onramp-net/onramp/testnet"
)

// pkg is the package built for this machine's architecture, its .deb
// installed into a fresh root.
type pkg struct {
	repo, root   string // the repository; the root the .deb is installed in
	deb, rpm     string
	files        []string // what dpkg says the package installed, directories too
	describe     string   // git describe at build time
	head         string   // the commit
	unitDir, man string   // in root
}

// TestPackage builds the packages with make package (for this machine's
// architecture only), installs the .deb into an empty root with dpkg
// --root, and checks what the systemd units expect is there, that the
// units pass systemd-analyze verify, the man pages and completions, and
// that the .rpm holds the same files.
func TestPackage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the packages")
	}
	needTools(t, "make", "git", "dpkg", "dpkg-deb", "dpkg-query", "systemd-analyze", "man", "rpm", "bash")
	if os.Geteuid() != 0 {
		testnet.SkipOrFail(t, "dpkg --root installs files owned by root and by the onramp user: run as root")
	}
	p := &pkg{repo: repoRoot(t)}
	dist := t.TempDir()
	p.describe = strings.TrimSpace(run(t, p.repo, nil, "git", "describe", "--tags", "--always", "--dirty"))
	p.head = strings.TrimSpace(run(t, p.repo, nil, "git", "rev-parse", "HEAD"))
	run(t, p.repo, []string{"ARCHS=" + runtime.GOARCH, "DIST=" + dist}, "make", "-s", "package")
	p.deb, p.rpm = only(t, dist, "*.deb"), only(t, dist, "*.rpm")
	t.Logf("built %s and %s", filepath.Base(p.deb), filepath.Base(p.rpm))

	// A fresh root: only dpkg's empty database. The maintainer scripts run
	// outside it with DPKG_ROOT set (--force-script-chrootless): the root
	// has no shell to chroot into, and the postinstall works on DPKG_ROOT.
	p.root = filepath.Join(t.TempDir(), "root")
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates"} {
		if err := os.MkdirAll(filepath.Join(p.root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(p.root, "var/lib/dpkg/status"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, p.repo, nil, "dpkg", "--root="+p.root, "--force-script-chrootless", "-i", p.deb)
	for _, l := range strings.Split(run(t, p.repo, nil, "dpkg-query", "--root="+p.root, "-L", "onramp"), "\n") {
		if strings.HasPrefix(l, "/") && l != "/." {
			p.files = append(p.files, l)
		}
	}
	p.unitDir = filepath.Join(p.root, "usr/lib/systemd/system")
	p.man = filepath.Join(p.root, "usr/share/man")

	t.Run("files", p.testFiles)
	t.Run("units", p.testUnits)
	t.Run("verify", p.testVerify)
	t.Run("verify fails on a broken unit", p.testVerifyBroken)
	t.Run("man pages", p.testMan)
	t.Run("completions", p.testCompletions)
	t.Run("version", p.testVersion)
	t.Run("the edge serves with the example edge.yml", p.testEdgeStarts)
	t.Run("rpm", p.testRPM)
	t.Run("reinstall, remove, purge", p.testLifecycle) // last: it removes the package
}

// The binaries, units, examples and system user are where the package
// says, with the right modes and owners.
func (p *pkg) testFiles(t *testing.T) {
	for _, name := range []string{"onramp-edge", "onramp-connector"} {
		path := filepath.Join(p.root, "usr/bin", name)
		mustMode(t, path, 0o755)
		// CGO_ENABLED=0: static, for this machine, so that it runs on any
		// distribution.
		f, err := elf.Open(path)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				t.Errorf("%s is dynamically linked (it has an interpreter); want CGO_ENABLED=0", name)
			}
		}
		if want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[runtime.GOARCH]; want != 0 && f.Machine != want {
			t.Errorf("%s is for %v, want %v", name, f.Machine, want)
		}
		f.Close()
	}

	// The units are the ones in packaging/systemd, the bytes connector
	// service install writes.
	n := 0
	err := fs.WalkDir(systemd.Units, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		want, _ := fs.ReadFile(systemd.Units, path)
		got, err := os.ReadFile(filepath.Join(p.unitDir, path))
		if err != nil {
			t.Errorf("unit %s not installed: %v", path, err)
		} else if !bytes.Equal(got, want) {
			t.Errorf("installed %s differs from packaging/systemd/%s", path, path)
		}
		mustMode(t, filepath.Join(p.unitDir, path), 0o644)
		return nil
	})
	if err != nil || n != 2 {
		t.Errorf("packaging/systemd: %d units, %v", n, err)
	}
	for _, f := range []string{"usr/lib/sysusers.d/onramp.conf", "usr/lib/tmpfiles.d/onramp.conf", "etc/onramp/edge.yml", "etc/onramp/example.ingress.yml"} {
		mustMode(t, filepath.Join(p.root, f), 0o644)
	}
	// The dashboard and the alerting rules, as in the repository (their
	// own tests check them: packaging/monitoring).
	for dst, src := range map[string]string{
		"usr/share/onramp/grafana/onramp.json":          "grafana/onramp.json",
		"usr/share/onramp/prometheus/onramp-alerts.yml": "prometheus/onramp-alerts.yml",
	} {
		want, _ := os.ReadFile(src)
		if got, err := os.ReadFile(filepath.Join(p.root, dst)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("/%s: not packaging/%s (%v)", dst, src, err)
		}
		mustMode(t, filepath.Join(p.root, dst), 0o644)
	}

	// The examples are valid, and kept when edited.
	edgeYML := filepath.Join(p.root, "etc/onramp/edge.yml")
	cfg, err := edgeconfig.Load(edgeYML)
	if err != nil {
		t.Errorf("the example edge.yml: %v", err)
	} else if cfg.Data != "/var/lib/onramp-edge" || cfg.Listen.Tunnels == "" {
		t.Errorf("the example edge.yml: data %q, listen.tunnels %q", cfg.Data, cfg.Listen.Tunnels)
	}
	// The documented example it carries, commented out, is valid too.
	b, _ := os.ReadFile(edgeYML)
	_, example, ok := strings.Cut(string(b), "# The documented example")
	if !ok {
		t.Errorf("the example edge.yml lacks the documented example:\n%s", b)
	} else {
		var doc strings.Builder
		for _, l := range strings.Split(example, "\n")[1:] {
			if l != "#" {
				doc.WriteString(strings.TrimPrefix(l, "# ") + "\n")
			}
		}
		if c, err := edgeconfig.Parse([]byte(doc.String())); err != nil {
			t.Errorf("the documented example in edge.yml: %v\n%s", err, doc.String())
		} else if len(c.Routes) == 0 || len(c.Bindings) == 0 {
			t.Errorf("the documented example in edge.yml has no routes or bindings:\n%s", doc.String())
		}
	}
	if _, err := ingress.Load(filepath.Join(p.root, "etc/onramp/example.ingress.yml")); err != nil {
		t.Errorf("the example ingress rules: %v", err)
	}
	conffiles, _ := os.ReadFile(filepath.Join(p.root, "var/lib/dpkg/info/onramp.conffiles"))
	if got, want := strings.Fields(string(conffiles)), []string{"/etc/onramp/edge.yml", "/etc/onramp/example.ingress.yml"}; !slices.Equal(got, want) {
		t.Errorf("conffiles %q, want %q", got, want)
	}

	// The postinstall made the onramp user and group and the edge's
	// state directory, theirs, mode 0700.
	uid, gid := lookup(t, p.root, "passwd", "onramp"), lookup(t, p.root, "group", "onramp")
	if uid < 0 || gid < 0 {
		t.Fatalf("no onramp user (%d) or group (%d) in the root's /etc/passwd and /etc/group", uid, gid)
	}
	passwd, _ := os.ReadFile(filepath.Join(p.root, "etc/passwd"))
	if !strings.Contains(string(passwd), ":/var/lib/onramp-edge:/usr/sbin/nologin\n") {
		t.Errorf("the onramp user's home and shell:\n%s", passwd)
	}
	state := filepath.Join(p.root, "var/lib/onramp-edge")
	if fi, err := os.Stat(state); err != nil {
		t.Errorf("state directory: %v", err)
	} else if st := fi.Sys().(*syscall.Stat_t); !fi.IsDir() || fi.Mode().Perm() != 0o700 || int(st.Uid) != uid || int(st.Gid) != gid {
		t.Errorf("/var/lib/onramp-edge: %v owner %d:%d, want a directory 0700 owned by onramp %d:%d", fi.Mode(), st.Uid, st.Gid, uid, gid)
	}
}

// Every file each unit names is in the root: the binary it runs, the
// paths in its command line, its user and group, its man page.
func (p *pkg) testUnits(t *testing.T) {
	for _, u := range p.units(t) {
		for _, kv := range unitKeys(t, filepath.Join(p.unitDir, u)) {
			k, v := kv[0], kv[1]
			switch {
			case k == "ExecStart":
				args := strings.Fields(strings.TrimLeft(v, "-@:+!"))
				mustMode(t, filepath.Join(p.root, args[0]), 0o755)
				for _, a := range args[1:] {
					if strings.HasPrefix(a, "/") {
						if _, err := os.Stat(filepath.Join(p.root, a)); err != nil {
							t.Errorf("%s: ExecStart names %s, not in the package: %v", u, a, err)
						}
					}
				}
			case strings.HasPrefix(k, "Exec"):
				// Another command (ExecReload's /bin/kill): the package's,
				// or the base system's.
				cmd := strings.Fields(strings.TrimLeft(v, "-@:+!"))[0]
				if _, err := os.Stat(filepath.Join(p.root, cmd)); err != nil {
					if _, err := exec.LookPath(cmd); err != nil {
						t.Errorf("%s: %s=%s: neither in the package nor on the system", u, k, cmd)
					}
				}
			case k == "User" || k == "Group":
				db := map[string]string{"User": "passwd", "Group": "group"}[k]
				if lookup(t, p.root, db, v) < 0 {
					t.Errorf("%s: %s=%s not in the root's /etc/%s", u, k, v, db)
				}
			case k == "Documentation":
				for _, d := range strings.Fields(v) {
					if page, ok := strings.CutPrefix(d, "man:"); ok {
						name, _, _ := strings.Cut(page, "(")
						if _, err := os.Stat(filepath.Join(p.man, "man1", name+".1.gz")); err != nil {
							t.Errorf("%s: Documentation=%s: %v", u, d, err)
						}
					}
				}
			}
		}
	}
}

// systemd-analyze verify passes on every unit, with its commands in the
// root and man looking for its pages there.
func (p *pkg) testVerify(t *testing.T) {
	dir := t.TempDir()
	for _, u := range p.units(t) {
		path := p.unitCopy(t, dir, u, p.root, func(s string) string { return s })
		if out, err := p.verify(path, p.man); err != nil || out != "" {
			t.Errorf("systemd-analyze verify %s: %v\n%s", u, err, out)
		}
	}
}

// The check above fails on a broken unit: a binary missing, a misspelt
// key, a value systemd cannot parse, a man page missing.
func (p *pkg) testVerifyBroken(t *testing.T) {
	empty := t.TempDir()
	for _, c := range []struct {
		name, root, man string
		edit            func(string) string
		says            string
	}{
		{"binary missing", empty, p.man, nil, "is not executable"},
		{"misspelt key", p.root, p.man, func(s string) string { return strings.Replace(s, "\nRestart=", "\nRestrat=", 1) }, "Unknown key"},
		{"bad value", p.root, p.man, func(s string) string { return strings.Replace(s, "\nType=notify", "\nType=notifyy", 1) }, "Failed to parse"},
		{"man page missing", p.root, empty, nil, "man "},
	} {
		edit := c.edit
		if edit == nil {
			edit = func(s string) string { return s }
		}
		for _, u := range p.units(t) {
			path := p.unitCopy(t, t.TempDir(), u, c.root, edit)
			out, err := p.verify(path, c.man)
			if err == nil && out == "" {
				t.Errorf("%s: systemd-analyze verify %s passed", c.name, u)
			} else if !strings.Contains(out, c.says) {
				t.Errorf("%s: systemd-analyze verify %s does not say %q: %v\n%s", c.name, u, c.says, err, out)
			}
		}
	}
}

// Every command of both binaries has its man page, which man renders
// without a warning.
func (p *pkg) testMan(t *testing.T) {
	pages := map[string]bool{}
	entries, err := os.ReadDir(filepath.Join(p.man, "man1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		pages[e.Name()] = true
	}
	want := map[string]bool{}
	for _, bin := range []string{"onramp-edge", "onramp-connector"} {
		for _, path := range commands(t, filepath.Join(p.root, "usr/bin", bin)) {
			want[strings.Join(path, "-")+".1.gz"] = true
		}
	}
	if !maps.Equal(pages, want) {
		t.Errorf("man pages:\n%s\nwant one per command:\n%s", strings.Join(slices.Sorted(maps.Keys(pages)), " "),
			strings.Join(slices.Sorted(maps.Keys(want)), " "))
	}
	for name := range want {
		path := filepath.Join(p.man, "man1", name)
		page := gunzip(t, path)
		title := strings.ToUpper(strings.TrimSuffix(name, ".1.gz"))
		if !strings.Contains(page, "\n.TH \""+title+"\" \"1\" ") {
			t.Errorf("%s: no .TH %q section 1 line:\n%.300s", name, title, page)
		}
		cmd := exec.Command("man", "--warnings", "-l", path)
		cmd.Env = append(os.Environ(), "MANWIDTH=80")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil || stderr.Len() > 0 {
			t.Errorf("man -l %s: %v\n%s", name, err, stderr.String())
		}
	}
	if page := gunzip(t, filepath.Join(p.man, "man1", "onramp-edge.1.gz")); !strings.Contains(page, `\fB--version\fP`) {
		t.Errorf("onramp-edge(1) does not list --version:\n%s", page)
	}
}

// bash completes the installed names (through the binaries' own
// completion); the zsh and fish scripts are for the installed names.
func (p *pkg) testCompletions(t *testing.T) {
	const bashCompletion = "/usr/share/bash-completion/bash_completion"
	if _, err := os.Stat(bashCompletion); err != nil {
		testnet.SkipOrFail(t, "bash-completion is not installed (scripts/deps.sh installs it): %v", err)
	}
	for _, bin := range []string{"onramp-edge", "onramp-connector"} {
		script := filepath.Join(p.root, "usr/share/bash-completion/completions", bin)
		fn := "__start_" + bin
		out := run(t, p.repo, []string{"PATH=" + filepath.Join(p.root, "usr/bin") + ":" + os.Getenv("PATH")}, "bash", "-c",
			`source `+bashCompletion+` && source "$1" && complete -p `+bin+` &&
			COMP_WORDS=(`+bin+` tun) COMP_CWORD=1 COMP_LINE="`+bin+` tun" COMP_POINT=${#COMP_LINE} && `+fn+` 2>/dev/null;
			printf 'reply: %s\n' "${COMPREPLY[@]}"`, "bash", script)
		if !strings.Contains(out, "-F "+fn+" "+bin+"\n") || !strings.Contains(out, "reply: tunnel\n") {
			t.Errorf("bash completion of %q: %s", bin+" tun", out)
		}
		if b, err := os.ReadFile(filepath.Join(p.root, "usr/share/zsh/vendor-completions", "_"+bin)); err != nil || !strings.HasPrefix(string(b), "#compdef "+bin+"\n") {
			t.Errorf("zsh completion of %s: %v %.100q", bin, err, b)
		}
		if b, err := os.ReadFile(filepath.Join(p.root, "usr/share/fish/vendor_completions.d", bin+".fish")); err != nil || !strings.Contains(string(b), "complete -c "+bin+" ") {
			t.Errorf("fish completion of %s: %v", bin, err)
		}
	}
}

// The installed binaries run and say which build they are.
func (p *pkg) testVersion(t *testing.T) {
	for _, bin := range []string{"onramp-edge", "onramp-connector"} {
		out := run(t, p.repo, nil, filepath.Join(p.root, "usr/bin", bin), "--version")
		lines := strings.Split(out, "\n")
		if len(lines) < 4 || lines[0] != bin+" version "+p.describe || !strings.HasPrefix(lines[1], "commit:  "+p.head) ||
			!strings.HasPrefix(lines[3], "built:   2") {
			t.Errorf("%s --version:\n%s\nwant version %s, commit %s and the build date", bin, out, p.describe, p.head)
		}
	}
	info := run(t, p.repo, nil, "dpkg-deb", "--field", p.deb, "Package", "Version", "Architecture", "Maintainer", "Homepage")
	want := run(t, p.repo, nil, filepath.Join(p.repo, "packaging/package.sh"), "version", p.describe)
	if !strings.Contains(info, "Package: onramp\n") || !strings.Contains(info, "Version: "+strings.TrimSpace(want)+"-1\n") ||
		!strings.Contains(info, "Architecture: "+runtime.GOARCH+"\n") || !strings.Contains(info, "Homepage: https://github.com/onramp-net/onramp\n") {
		t.Errorf("the .deb's control fields:\n%s\nwant version %s-1", info, strings.TrimSpace(want))
	}
}

// The installed edge, run as its unit runs it (in a network namespace of
// its own), serves with the installed edge.yml.
func (p *pkg) testEdgeStarts(t *testing.T) {
	needTools(t, "unshare", "ip")
	data := t.TempDir()
	cmd := exec.Command("unshare", "-n", "sh", "-c", `ip link set lo up && exec "$0" --config "$1" --data "$2" serve`,
		filepath.Join(p.root, "usr/bin/onramp-edge"), filepath.Join(p.root, "etc/onramp/edge.yml"), data)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var log []string
	timeout := time.After(30 * time.Second)
	for ready := false; !ready; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the edge exited: %v\n%s", cmd.Wait(), strings.Join(log, "\n"))
			}
			log = append(log, l)
			ready = strings.Contains(l, `msg="edge ready"`)
		case <-timeout:
			t.Fatalf("the edge is not ready after 30s:\n%s", strings.Join(log, "\n"))
		}
	}
	if !slices.ContainsFunc(log, func(l string) bool { return strings.Contains(l, "quic=[::]:7844") }) {
		t.Errorf("the edge does not listen for connectors on [::]:7844:\n%s", strings.Join(log, "\n"))
	}
	cmd.Process.Signal(syscall.SIGTERM)
	go func() {
		for range lines {
		}
	}()
	if err := cmd.Wait(); err != nil {
		t.Errorf("the edge, stopped with SIGTERM: %v", err)
	}
}

// The .rpm holds the files the .deb installed, with the same modes, zsh's
// completions in Fedora's directory, and the same configuration files
// marked noreplace.
func (p *pkg) testRPM(t *testing.T) {
	deb := map[string]string{}
	for _, f := range p.files {
		fi, err := os.Lstat(filepath.Join(p.root, f))
		if err != nil {
			t.Fatal(err)
		}
		if !fi.IsDir() {
			deb[strings.Replace(f, "/usr/share/zsh/vendor-completions/", "/usr/share/zsh/site-functions/", 1)] = fi.Mode().String()
		}
	}
	rpmFiles, config := map[string]string{}, []string{}
	for _, l := range strings.Split(strings.TrimSuffix(run(t, p.repo, nil, "rpm", "-qp", "--qf", `[%{FILENAMES}\t%{FILEMODES:perms}\t%{FILEFLAGS:fflags}\n]`, p.rpm), "\n"), "\n") {
		f := strings.Split(l, "\t")
		if len(f) != 3 {
			t.Fatalf("rpm -qp: %q", l)
		}
		if !strings.HasPrefix(f[1], "d") {
			rpmFiles[f[0]] = f[1]
		}
		if strings.Contains(f[2], "c") {
			if !strings.Contains(f[2], "n") {
				t.Errorf("rpm: %s is %%config without noreplace", f[0])
			}
			config = append(config, f[0])
		}
	}
	for _, f := range slices.Sorted(maps.Keys(deb)) {
		if rpmFiles[f] != deb[f] {
			t.Errorf("%s: in the .deb %s, in the .rpm %q", f, deb[f], rpmFiles[f])
		}
	}
	for _, f := range slices.Sorted(maps.Keys(rpmFiles)) {
		if _, ok := deb[f]; !ok {
			t.Errorf("%s: in the .rpm only", f)
		}
	}
	if want := []string{"/etc/onramp/edge.yml", "/etc/onramp/example.ingress.yml"}; !slices.Equal(config, want) {
		t.Errorf("rpm %%config files %q, want %q", config, want)
	}
	arch := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[runtime.GOARCH]
	if got := run(t, p.repo, nil, "rpm", "-qp", "--qf", "%{NAME} %{ARCH} %{LICENSE} %{URL}", p.rpm); got != "onramp "+arch+" NOASSERTION https://github.com/onramp-net/onramp" {
		t.Errorf("rpm header: %q", got)
	}
}

// Installing again (an upgrade) keeps an edited edge.yml and makes no
// second user; removing keeps the configuration, the user and the state;
// purging removes the configuration and keeps the state.
func (p *pkg) testLifecycle(t *testing.T) {
	edgeYML := filepath.Join(p.root, "etc/onramp/edge.yml")
	f, err := os.OpenFile(edgeYML, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("# edited by the operator\n")
	f.Close()
	run(t, p.repo, nil, "dpkg", "--root="+p.root, "--force-script-chrootless", "-i", p.deb)
	if b, _ := os.ReadFile(edgeYML); !strings.HasSuffix(string(b), "# edited by the operator\n") {
		t.Errorf("reinstalling replaced the edited edge.yml")
	}
	if b, _ := os.ReadFile(filepath.Join(p.root, "etc/passwd")); strings.Count("\n"+string(b), "\nonramp:") != 1 {
		t.Errorf("after reinstalling, /etc/passwd:\n%s", b)
	}
	state := filepath.Join(p.root, "var/lib/onramp-edge")
	if err := os.WriteFile(filepath.Join(state, "edge.db"), []byte("tunnels"), 0o600); err != nil {
		t.Fatal(err)
	}

	run(t, p.repo, nil, "dpkg", "--root="+p.root, "--force-script-chrootless", "-r", "onramp")
	for _, gone := range []string{"usr/bin/onramp-edge", "usr/lib/systemd/system/onramp-edge.service", "usr/share/man/man1/onramp-edge.1.gz"} {
		if _, err := os.Stat(filepath.Join(p.root, gone)); err == nil {
			t.Errorf("removed, the package left %s", gone)
		}
	}
	for _, kept := range []string{"etc/onramp/edge.yml", "var/lib/onramp-edge/edge.db"} {
		if _, err := os.Stat(filepath.Join(p.root, kept)); err != nil {
			t.Errorf("removing the package removed %s: %v", kept, err)
		}
	}
	if lookup(t, p.root, "passwd", "onramp") < 0 {
		t.Errorf("removing the package removed the onramp user")
	}

	run(t, p.repo, nil, "dpkg", "--root="+p.root, "--force-script-chrootless", "--purge", "onramp")
	if _, err := os.Stat(edgeYML); err == nil {
		t.Errorf("purged, the package left /etc/onramp/edge.yml")
	}
	if _, err := os.Stat(filepath.Join(state, "edge.db")); err != nil {
		t.Errorf("purging the package removed the edge's state: %v", err)
	}
}

// units lists the units the package installed.
func (p *pkg) units(t *testing.T) []string {
	var us []string
	for _, f := range p.files {
		if dir, name := filepath.Split(f); dir == "/usr/lib/systemd/system/" && strings.HasSuffix(name, ".service") {
			us = append(us, name)
		}
	}
	if len(us) == 0 {
		t.Fatal("the package installed no unit")
	}
	return us
}

// unitCopy writes unit u, with its /usr/bin/onramp-* commands under root
// and edited by edit, into dir and returns its path.
func (p *pkg) unitCopy(t *testing.T, dir, u, root string, edit func(string) string) string {
	b, err := os.ReadFile(filepath.Join(p.unitDir, u))
	if err != nil {
		t.Fatal(err)
	}
	s := edit(strings.ReplaceAll(string(b), "/usr/bin/onramp-", filepath.Join(root, "usr/bin")+"/onramp-"))
	path := filepath.Join(dir, u)
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// verify runs systemd-analyze verify on the unit at path, with man
// looking in manDir, and returns what it said. A unit that passes makes
// it say nothing: warnings (an unknown key, a value it ignores) do not
// change its exit status, so both count.
func (p *pkg) verify(path, manDir string) (string, error) {
	cmd := exec.Command("systemd-analyze", "verify", path)
	cmd.Dir = filepath.Dir(path)
	cmd.Env = append(os.Environ(), "MANPATH="+manDir, "SYSTEMD_LOG_COLOR=0")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// unitKeys returns the unit file's key=value lines.
func unitKeys(t *testing.T, path string) [][2]string {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var kvs [][2]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") {
			kvs = append(kvs, [2]string{k, v})
		}
	}
	return kvs
}

// commands lists the command paths of the binary: itself and every
// subcommand its --help shows, recursively, but help.
func commands(t *testing.T, bin string) [][]string {
	var walk func(path []string) [][]string
	walk = func(path []string) [][]string {
		out := run(t, "/", nil, bin, append(path[1:], "--help")...)
		cmds := [][]string{path}
		_, list, ok := strings.Cut(out, "\nAvailable Commands:\n")
		if !ok {
			return cmds
		}
		list, _, _ = strings.Cut(list, "\n\n")
		for _, l := range strings.Split(list, "\n") {
			if f := strings.Fields(l); len(f) > 0 && f[0] != "help" {
				cmds = append(cmds, walk(append(slices.Clip(path), f[0]))...)
			}
		}
		return cmds
	}
	return walk([]string{filepath.Base(bin)})
}

// lookup returns the id of name in the root's /etc/passwd or /etc/group,
// or -1.
func lookup(t *testing.T, root, db, name string) int {
	b, err := os.ReadFile(filepath.Join(root, "etc", db))
	if err != nil {
		t.Errorf("%s: %v", db, err)
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Split(l, ":"); len(f) > 2 && f[0] == name {
			id, err := strconv.Atoi(f[2])
			if err == nil {
				return id
			}
		}
	}
	return -1
}

func mustMode(t *testing.T, path string, mode fs.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Errorf("%v", err)
	} else if !fi.Mode().IsRegular() || fi.Mode().Perm() != mode {
		t.Errorf("%s: %v, want a regular file %v", path, fi.Mode(), mode)
	}
}

func gunzip(t *testing.T, path string) string {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return string(b)
}

// only returns the one file matching pattern in dir.
func only(t *testing.T, dir, pattern string) string {
	m, _ := filepath.Glob(filepath.Join(dir, pattern))
	if len(m) != 1 {
		t.Fatalf("%s in %s: %q, want one", pattern, dir, m)
	}
	return m[0]
}

func needTools(t *testing.T, names ...string) {
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			testnet.SkipOrFail(t, "%s is not installed (scripts/deps.sh installs what the tests need)", n)
		}
	}
}

// repoRoot is the module's directory.
func repoRoot(t *testing.T) string {
	gomod := strings.TrimSpace(run(t, ".", nil, "go", "env", "GOMOD"))
	if gomod == "" || gomod == os.DevNull {
		t.Fatal("go env GOMOD: not in the module")
	}
	return filepath.Dir(gomod)
}

// run runs a command in dir with env added to the environment and
// returns its standard output; it fails the test if the command fails.
func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// Package versions made of git describe are what dpkg and rpm accept, and
// they order as the commits do, so that each build upgrades the one
// before.
func TestPackageVersion(t *testing.T) {
	repo := repoRoot(t)
	// In the order of the commits.
	cases := []struct{ describe, count, want string }{
		{"2c13399", "5", "0.0.0+git5.2c13399"},
		{"2c13399-dirty", "5", "0.0.0+git5.2c13399.dirty"},
		{"a1b2c3d", "6", "0.0.0+git6.a1b2c3d"},
		{"v0.1.0-rc1", "", "0.1.0~rc1"},
		{"v0.1.0-rc1-2-g1a2b3c4", "", "0.1.0~rc1+git2.1a2b3c4"},
		{"v0.1.0", "", "0.1.0"},
		{"v0.1.0-dirty", "", "0.1.0+dirty"},
		{"v0.1.0-2-g1a2b3c4", "", "0.1.0+git2.1a2b3c4"},
		{"v0.1.0-10-g0a2b3c4-dirty", "", "0.1.0+git10.0a2b3c4.dirty"},
		{"0.2.0", "", "0.2.0"},
	}
	for _, c := range cases {
		if got := strings.TrimSpace(run(t, repo, nil, "packaging/package.sh", "version", c.describe, c.count)); got != c.want {
			t.Errorf("git describe %q: package version %q, want %q", c.describe, got, c.want)
		}
	}
	for _, bad := range []string{"release_1", "v1.0.0/x", "1.0 beta"} {
		cmd := exec.Command("packaging/package.sh", "version", bad, "1")
		cmd.Dir = repo
		if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "package.sh: git describe said") {
			t.Errorf("git describe %q: want an error naming it, got %v %q", bad, err, out)
		}
	}

	_, dpkgErr := exec.LookPath("dpkg")
	_, rpmErr := exec.LookPath("rpm")
	if dpkgErr != nil || rpmErr != nil {
		testnet.SkipOrFail(t, "dpkg or rpm is not installed (scripts/deps.sh installs them): %v %v", dpkgErr, rpmErr)
	}
	for i := 1; i < len(cases); i++ {
		older, newer := cases[i-1].want, cases[i].want
		if err := exec.Command("dpkg", "--compare-versions", older, "lt", newer).Run(); err != nil {
			t.Errorf("dpkg: %s is not older than %s", older, newer)
		}
		cmp := run(t, repo, nil, "rpm", "--eval", "%{lua:print(rpm.vercmp('"+older+"', '"+newer+"'))}")
		if strings.TrimSpace(cmp) != "-1" {
			t.Errorf("rpm: %s is not older than %s (vercmp %s)", older, newer, cmp)
		}
	}
}

// Where systemd-sysusers and systemd-tmpfiles are missing (a container
// without systemd), the postinstall makes the user with useradd and the
// state directory with install and chown, in the root DPKG_ROOT names;
// run again (an upgrade), it changes nothing.
func TestPostinstallWithoutSystemd(t *testing.T) {
	needTools(t, "useradd", "groupadd", "getent", "grep", "install", "chown", "awk", "sh")
	if os.Geteuid() != 0 {
		testnet.SkipOrFail(t, "useradd --root needs root")
	}
	repo := repoRoot(t)
	root := t.TempDir()
	// A base system's accounts.
	for name, content := range map[string]string{
		"passwd": "root:x:0:0:root:/root:/bin/sh\n", "group": "root:x:0:\n",
		"shadow": "root:*:19000:0:99999:7:::\n", "gshadow": "root:*::\n",
	} {
		if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "etc", name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A PATH with the tools the fallback uses and no systemd.
	bin := t.TempDir()
	for _, tool := range []string{"useradd", "groupadd", "getent", "grep", "install", "chown", "awk"} {
		p, _ := exec.LookPath(tool)
		if err := os.Symlink(p, filepath.Join(bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	sh, _ := exec.LookPath("sh")
	for range 2 {
		run(t, repo, []string{"DPKG_ROOT=" + root, "PATH=" + bin}, sh, "packaging/scripts/postinstall.sh", "configure")
	}
	uid, gid := lookup(t, root, "passwd", "onramp"), lookup(t, root, "group", "onramp")
	passwd, _ := os.ReadFile(filepath.Join(root, "etc/passwd"))
	if uid <= 0 || gid <= 0 || strings.Count("\n"+string(passwd), "\nonramp:") != 1 {
		t.Fatalf("onramp user %d group %d; /etc/passwd:\n%s", uid, gid, passwd)
	}
	if !strings.Contains(string(passwd), ":/var/lib/onramp-edge:/usr/sbin/nologin\n") {
		t.Errorf("the onramp user's home and shell:\n%s", passwd)
	}
	fi, err := os.Stat(filepath.Join(root, "var/lib/onramp-edge"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); !fi.IsDir() || fi.Mode().Perm() != 0o700 || int(st.Uid) != uid || int(st.Gid) != gid {
		t.Errorf("/var/lib/onramp-edge: %v owner %d:%d, want a directory 0700 owned by %d:%d", fi.Mode(), st.Uid, st.Gid, uid, gid)
	}
}
