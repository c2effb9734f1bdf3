// Package systemd holds onramp's systemd units. The packages install them
// under /usr/lib/systemd/system, and `connector service install` writes the
// connector's unit from the same bytes, so there is one copy of each.
package systemd

import "embed"

// Units holds onramp-edge.service and onramp-connector@.service.
//
//go:embed *.service
var Units embed.FS
