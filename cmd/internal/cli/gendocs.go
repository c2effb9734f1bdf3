//go:build gendocs

// The man pages and shell completions of the packages (packaging/package.sh)
// come from the binaries' own cobra commands: built with -tags gendocs, a
// binary has a hidden `gendocs` command that writes them. The tag keeps
// the documentation generator (cobra/doc, go-md2man) out of the binaries
// that are shipped.

package cli

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

func init() { setupHooks = append(setupHooks, addGendocs) }

func addGendocs(root *cobra.Command) {
	var man, completions string
	cmd := &cobra.Command{
		Use:    "gendocs --man DIR --completions DIR",
		Short:  "write the man pages and shell completions of the installed binary (packaging)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if man == "" && completions == "" {
				return errors.New("gendocs: give --man DIR, --completions DIR or both")
			}
			// The pages and scripts are for the installed name.
			if !strings.HasPrefix(root.Name(), InstalledPrefix) {
				Rename(root, InstalledPrefix+root.Name())
			}
			root.DisableAutoGenTag = true
			root.InitDefaultVersionFlag() // cobra adds it to the command it runs: gendocs
			if man != "" {
				if err := genMan(root, man); err != nil {
					return fmt.Errorf("gendocs: %w", err)
				}
			}
			if completions != "" {
				if err := genCompletions(root, completions); err != nil {
					return fmt.Errorf("gendocs: %w", err)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&man, "man", "", "directory for the man pages (NAME.1.gz, NAME-SUBCOMMAND.1.gz)")
	cmd.Flags().StringVar(&completions, "completions", "", "directory for the completion scripts (bash/NAME, zsh/_NAME, fish/NAME.fish)")
	root.AddCommand(cmd)
}

// genMan writes a gzipped man page in section 1 for root and every
// available subcommand: onramp-edge.1.gz, onramp-edge-tunnel-create.1.gz.
// The date is the build's when it was stamped (else SOURCE_DATE_EPOCH or
// now), so that a build makes the same pages again.
func genMan(root *cobra.Command, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var date *time.Time
	if t, err := time.Parse(time.RFC3339, Build().Date); err == nil {
		date = &t
	}
	var walk func(c *cobra.Command) error
	walk = func(c *cobra.Command) error {
		for _, sub := range c.Commands() {
			if !sub.IsAvailableCommand() || sub.IsAdditionalHelpTopicCommand() {
				continue
			}
			if err := walk(sub); err != nil {
				return err
			}
		}
		header := &doc.GenManHeader{Section: "1", Date: date, Source: "onramp " + Version(), Manual: "onramp manual"}
		var page bytes.Buffer
		if err := doc.GenMan(c, header, &page); err != nil {
			return err
		}
		name := strings.ReplaceAll(c.CommandPath(), " ", "-") + ".1.gz"
		return writeGzip(filepath.Join(dir, name), page.Bytes())
	}
	return walk(root)
}

// writeGzip writes data gzipped to path, with no name or time in the
// gzip header.
func writeGzip(path string, data []byte) error {
	var b bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	if _, err := zw.Write(data); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// genCompletions writes the bash, zsh and fish completion scripts, named
// as each shell's completion directory expects.
func genCompletions(root *cobra.Command, dir string) error {
	name := root.Name()
	for _, sh := range []struct {
		file string
		gen  func(string) error
	}{
		{filepath.Join("bash", name), func(p string) error { return root.GenBashCompletionFileV2(p, true) }},
		{filepath.Join("zsh", "_"+name), root.GenZshCompletionFile},
		{filepath.Join("fish", name+".fish"), func(p string) error { return root.GenFishCompletionFile(p, true) }},
	} {
		p := filepath.Join(dir, sh.file)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := sh.gen(p); err != nil {
			return fmt.Errorf("%s: %w", sh.file, err)
		}
	}
	return nil
}
