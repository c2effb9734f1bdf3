package wg

// Staging: a packet for a peer without a session waits, in a copy, for
// the handshake the device starts for it (or for the one the peer starts:
// a peer without an endpoint cannot be reached until it writes). What
// waits is bounded three ways, so that peers that never connect (10,000
// clients whose laptops are shut, and a LAN host sending to each) cost a
// bounded, small amount:
//
//   - per peer: the newest maxStaged packets (wireguard-go's
//     QueueStagedSize), the oldest going first;
//   - in time: a packet older than rekeyAttemptTime (90 s, the life of a
//     handshake attempt: wireguard-go flushes its queue when the
//     handshake gives up) is dropped;
//   - in total: the device holds at most Config.MaxStagedBytes
//     (DefaultMaxStagedBytes) for all its peers; a packet over the budget
//     is dropped.
//
// Drops are counted by reason (StagingStats).

// StagingStats counts the packets the device held for peers without a
// session, and those it dropped.
type StagingStats struct {
	// Packets and Bytes are held now (Bytes counts what the budget
	// counts: each packet's length plus a fixed overhead).
	Packets, Bytes int64
	// PeerFull were dropped, the oldest of a peer's, for a newer one
	// when the peer had maxStaged (128) waiting.
	PeerFull uint64
	// DeviceFull were dropped because the device held its budget
	// (Config.MaxStagedBytes).
	DeviceFull uint64
	// Expired were dropped for waiting longer than a handshake attempt
	// lasts (90 s), or when the handshake gave up.
	Expired uint64
	// Removed were dropped with their peer.
	Removed uint64
}
