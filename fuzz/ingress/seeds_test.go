package ingressfuzz

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/onramp-net/onramp/l4proxy/ingress"
)

// TestParseSeeds checks that the seeds named valid-* parse and those named
// invalid-* do not, so the corpus covers both sides.
func TestParseSeeds(t *testing.T) {
	files, err := filepath.Glob("testdata/fuzz/FuzzParseIngress/*")
	if err != nil || len(files) == 0 {
		t.Fatalf("no seeds: %v", err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(data), "\n")
		if len(lines) < 2 || lines[0] != "go test fuzz v1" || !strings.HasPrefix(lines[1], "[]byte(") {
			t.Fatalf("%s: not a FuzzParseIngress corpus file", file)
		}
		yaml, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		_, err = ingress.Parse([]byte(yaml))
		switch name := filepath.Base(file); {
		case strings.HasPrefix(name, "valid-") && err != nil:
			t.Errorf("%s: %v", name, err)
		case strings.HasPrefix(name, "invalid-") && err == nil:
			t.Errorf("%s parses", name)
		case strings.HasPrefix(name, "invalid-"):
			t.Logf("%s: %v", name, err)
		}
	}
}
