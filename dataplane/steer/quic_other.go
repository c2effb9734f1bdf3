//go:build !linux

package steer

import (
	"errors"
	"net"
)

// QUIC is a SO_REUSEPORT group of UDP sockets with the QUIC steering
// program; Linux only.
type QUIC struct{}

// Count is what the program did with the datagrams of one socket.
type Count struct{ ConnID, Hash uint64 }

// Total is c.ConnID + c.Hash.
func (c Count) Total() uint64 { return c.ConnID + c.Hash }

// ListenQUIC fails: steering needs Linux's eBPF.
func ListenQUIC(network, addr string, n int) (*QUIC, error) {
	return nil, errors.New("steer: QUIC steering needs Linux (eBPF sk_reuseport)")
}

func (q *QUIC) Conns() []*net.UDPConn                  { return nil }
func (q *QUIC) ConnIDGenerator(i int) *ConnIDGenerator { return &ConnIDGenerator{index: uint8(i)} }
func (q *QUIC) Counts() (per []Count, refused uint64, err error) {
	return nil, 0, errors.New("steer: Linux only")
}
func (q *QUIC) Close() error { return nil }
