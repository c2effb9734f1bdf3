package connector

import "time"

// SetQUICRetryAfter changes how long an "auto" HTTP/2 connection lives
// before QUIC is retried, and returns a function restoring it.
func SetQUICRetryAfter(d time.Duration) func() {
	old := quicRetryAfter
	quicRetryAfter = d
	return func() { quicRetryAfter = old }
}

// SetFlowUnrepliedIdle changes how long a UDP flow the origin never
// answered lives without a datagram, and returns a function restoring it.
func SetFlowUnrepliedIdle(d time.Duration) func() {
	old := flowUnrepliedIdle
	flowUnrepliedIdle = d
	return func() { flowUnrepliedIdle = old }
}
