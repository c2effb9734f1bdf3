package cli

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
)

// InstalledPrefix is the prefix of the installed binaries' names: the
// packages install edge and connector as /usr/bin/onramp-edge and
// /usr/bin/onramp-connector.
const InstalledPrefix = "onramp-"

// setupHooks run at the end of [Setup]; the gendocs build tag adds one
// (see gendocs.go).
var setupHooks []func(root *cobra.Command)

// Setup prepares a binary's root command: --version prints the version,
// commit, Go version and build date ([Build]); and a binary run under
// its installed name (onramp-edge for edge) uses that name in its help,
// its errors and the completion scripts it writes.
func Setup(root *cobra.Command) {
	b := Build()
	root.Version = b.short()
	root.SetVersionTemplate(versionTemplate(b))
	if filepath.Base(os.Args[0]) == InstalledPrefix+root.Name() {
		Rename(root, InstalledPrefix+root.Name())
	}
	for _, h := range setupHooks {
		h(root)
	}
}

// Rename changes the name of root, keeping the rest of its Use line.
func Rename(root *cobra.Command, name string) {
	root.Use = name + strings.TrimPrefix(root.Use, root.Name())
}
