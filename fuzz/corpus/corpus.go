// Package corpus reads the module's fuzz corpora (every testdata/fuzz
// directory), for tests that hold one parser to another over every input
// the fuzzers ever kept: the eBPF programs against the Go classifiers.
package corpus

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Bytes returns the []byte values of every fuzz corpus file in the module
// (found from the test's working directory up to go.mod).
func Bytes(t testing.TB) [][]byte {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	err = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "bin") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.Contains(filepath.ToSlash(path), "/testdata/fuzz/") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, line := range strings.Split(string(b), "\n") {
			if s, ok := strings.CutPrefix(line, "[]byte("); ok && strings.HasSuffix(s, ")") {
				if v, err := strconv.Unquote(strings.TrimSuffix(s, ")")); err == nil {
					out = append(out, []byte(v))
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatalf("no fuzz corpus under %s", root)
	}
	return out
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", errors.New("corpus: no go.mod above the working directory")
		}
		dir = up
	}
}
