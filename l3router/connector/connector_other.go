//go:build !linux

package connector

import (
	"context"
	"errors"
	"log/slog"
	"runtime"

	"github.com/onramp-net/onramp/l3router/l3config"
)

// Connector is a running L3 connector; it runs on Linux only.
type Connector struct{}

// Start fails: the L3 connector runs on Linux only.
func Start(ctx context.Context, cfg *l3config.Connector, log *slog.Logger) (*Connector, error) {
	return nil, errors.New("the L3 connector runs on Linux only, not " + runtime.GOOS)
}

// Info describes the connector.
func (c *Connector) Info() Info { return Info{} }

// Stats returns the counters.
func (c *Connector) Stats() (Stats, error) { return Stats{}, errors.ErrUnsupported }

// Ready reports whether the session with the edge can carry packets.
func (c *Connector) Ready() bool { return false }

// Reload fails: the L3 connector runs on Linux only.
func (c *Connector) Reload(ctx context.Context, cfg *l3config.Connector) (Reloaded, error) {
	return Reloaded{}, errors.ErrUnsupported
}

// Close stops the connector.
func (c *Connector) Close() error { return nil }

// Inspect looks at this host as `connector l3 run` would find it.
func Inspect(ctx context.Context, cfg *l3config.Connector) []string {
	return []string{"warning: the L3 connector runs on Linux only, not " + runtime.GOOS}
}
