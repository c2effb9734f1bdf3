package cli

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// LevelLogger is [LogFlags.Logger] with a level that can change while the
// program runs (the edge's reload sets it): the returned LevelVar holds
// the --log-level the logger and every logger derived from it obey.
func (f LogFlags) LevelLogger(w io.Writer) (*slog.Logger, *slog.LevelVar, error) {
	level := new(slog.LevelVar)
	if err := level.UnmarshalText([]byte(f.Level)); err != nil {
		return nil, nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", f.Level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(f.Format) {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, opts)), level, nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), level, nil
	}
	return nil, nil, fmt.Errorf("--log-format %q: want text or json", f.Format)
}
