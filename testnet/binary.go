package testnet

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

var (
	binMu    sync.Mutex
	binDir   string
	binBuilt = map[string]string{}
)

// BuildBinary builds the main package pkg (a module path such as
// "github.com/onramp-net/onramp/cmd/edge") once per process and returns the
// path of the binary. Binaries live in a temporary directory that
// [RemoveBinaries] deletes (testnet.Main calls it), or in
// $ONRAMP_BIN_DIR, kept, when that is set (for profilers, which read the
// symbols from the binary after the run).
func BuildBinary(pkg string) (string, error) {
	binMu.Lock()
	defer binMu.Unlock()
	if p, ok := binBuilt[pkg]; ok {
		return p, nil
	}
	if binDir == "" && os.Getenv("ONRAMP_BIN_DIR") != "" {
		if err := os.MkdirAll(os.Getenv("ONRAMP_BIN_DIR"), 0o755); err != nil {
			return "", err
		}
		binDir = os.Getenv("ONRAMP_BIN_DIR")
	}
	if binDir == "" {
		d, err := os.MkdirTemp("", "onramp-testnet-bin-")
		if err != nil {
			return "", err
		}
		binDir = d
	}
	out := filepath.Join(binDir, filepath.Base(pkg))
	args := []string{"build", "-o", out}
	if os.Getenv("ONRAMP_RACE_BINARIES") == "1" {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, pkg)...)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w: %s", pkg, err, strings.TrimSpace(string(msg)))
	}
	binBuilt[pkg] = out
	return out, nil
}

// RemoveBinaries deletes what BuildBinary built.
func RemoveBinaries() {
	binMu.Lock()
	defer binMu.Unlock()
	if binDir != "" {
		if binDir != os.Getenv("ONRAMP_BIN_DIR") {
			_ = os.RemoveAll(binDir)
		}
		binDir = ""
		binBuilt = map[string]string{}
	}
}
