package cli

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestSecretsWriteFile: a key file is written whole with mode 0600 under
// umask 000, replaces a wider file of the same name (its mode is not
// kept), follows a symbolic link to its target, and leaves no temporary
// file behind.
func TestSecretsWriteFile(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := t.TempDir()
	path := filepath.Join(dir, "site.key")
	if err := os.WriteFile(path, []byte("old contents, world readable\n"), 0o666); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	checkFile(t, path, "secret\n", 0o600)

	// A fresh file, and one through a symbolic link.
	fresh := filepath.Join(dir, "fresh.yml")
	if err := WriteFile(fresh, []byte("a"), 0o600); err != nil {
		t.Fatal(err)
	}
	checkFile(t, fresh, "a", 0o600)
	link := filepath.Join(dir, "link.yml")
	if err := os.Symlink("fresh.yml", link); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(link, []byte("b"), 0o600); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the link was replaced: %v %v", fi.Mode(), err)
	}
	checkFile(t, fresh, "b", 0o600)

	// A certificate may be public.
	crt := filepath.Join(dir, "edge.crt")
	if err := WriteFile(crt, []byte("cert"), 0o644); err != nil {
		t.Fatal(err)
	}
	checkFile(t, crt, "cert", 0o644)

	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
	// A directory that does not exist: an error naming the path.
	if err := WriteFile(filepath.Join(dir, "no", "such.key"), nil, 0o600); err == nil || !strings.Contains(err.Error(), "such.key") {
		t.Fatalf("missing directory: %v", err)
	}
}

// TestSecretsWriteFileDevice: a path that is not a regular file (--out
// /dev/stdout) is written in place, not replaced.
func TestSecretsWriteFileDevice(t *testing.T) {
	if err := WriteFile(os.DevNull, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(os.DevNull); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		t.Fatalf("%s replaced: %v %v", os.DevNull, fi.Mode(), err)
	}
}

func checkFile(t *testing.T, path, want string, perm os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil || string(b) != want {
		t.Fatalf("%s: %q %v, want %q", path, b, err, want)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != perm {
		t.Fatalf("%s: mode %v, want %v", path, fi.Mode().Perm(), perm)
	}
}
