package connector

import "time"

// SetQUICRetryAfter changes how long an "auto" HTTP/2 connection lives
// before QUIC is retried, and returns a function restoring it.
func SetQUICRetryAfter(d time.Duration) func() {
	old := quicRetryAfter
	quicRetryAfter = d
	return func() { quicRetryAfter = old }
}
