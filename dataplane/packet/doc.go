// Package packet parses and builds IPv4, IPv6, TCP, UDP, ICMPv4 and ICMPv6
// headers in place, computes Internet checksums, derives flow keys and
// classifies the UDP payloads the edge receives (WireGuard, QUIC).
//
// Parsers take a byte slice and return a small view value that aliases it:
// nothing is copied and nothing is allocated, on success or on error. A view
// is valid only while the caller keeps the underlying buffer unchanged,
// except through the view's own setters. Builders write into the caller's
// buffer (AppendX appends, PutX writes at the start of a slice and returns
// the length).
//
// Every malformed input yields an error that wraps one of the package
// sentinels ([ErrTruncated], [ErrBadVersion], …) inside an [*Error] naming
// the layer and the field; these errors are package-level values, so error
// paths do not allocate either. Nothing in this package panics on any input.
//
// This package is the reference for the eBPF classifiers: keep it exact.
package packet
