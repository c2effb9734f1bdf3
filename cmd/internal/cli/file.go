package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// WriteFile writes data to path the way files holding keys must be
// written: into a new temporary file of mode perm in the same directory,
// fsynced, then renamed over path, and the directory fsynced. Readers see
// the old file or the whole new one, never a part; the data is never in a
// file of a wider mode (an existing file's mode is not kept, unlike
// os.WriteFile); a crash leaves at worst a stray temporary file, never a
// truncated key.
//
// A symbolic link at path is followed: its target is replaced. An existing
// path that is not a regular file (a terminal, a pipe: --out /dev/stdout)
// is written to in place, as there is nothing to rename over.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	if target, err := filepath.EvalSymlinks(path); err == nil {
		path = target
	}
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		_, err = f.Write(data)
		return errors.Join(err, f.Close())
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	// CreateTemp makes the file with mode 0600 whatever the umask.
	f, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	err = func() error {
		if err := f.Chmod(perm); err != nil {
			return err
		}
		if _, err := f.Write(data); err != nil {
			return err
		}
		return f.Sync()
	}()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	// The rename is durable once the directory is synced; a failure here
	// leaves a complete file, so it is not worth failing the write for.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
