package wg

import (
	"encoding"
	"encoding/binary"
	"hash"
	"sync"

	"golang.org/x/crypto/blake2s"
)

// The protocol's MAC is keyed BLAKE2s-128. blake2s.New128 allocates a
// digest for each key, and the key changes from one message to the next
// (mac1 is keyed by the receiver, mac2 by the sender's cookie, a cookie by
// the secret), so checking each handshake message of a flood would
// allocate. A macState instead keeps one digest and re-keys it by loading
// the initial state of a keyed BLAKE2s (RFC 7693, section 2.5: the
// parameter block's key length in the first word, the key padded to a
// block as the first block, not yet compressed), the state New128 starts
// from, through the digest's UnmarshalBinary. TestMACState checks it
// against New128.

// blake2sIV is BLAKE2s's initialisation vector (RFC 7693, section 2.6).
var blake2sIV = [8]uint32{
	0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
	0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
}

// blake2sState is the layout of x/crypto's blake2s digest state
// (MarshalBinary): "b2s", h[8] and c[2] big-endian, the digest size, the
// block, the offset in it.
const (
	stateH      = 3
	stateC      = stateH + 8*4
	stateSize   = stateC + 2*4
	stateBlock  = stateSize + 1
	stateOffset = stateBlock + blake2s.BlockSize
	stateLen    = stateOffset + 1
)

// macState is a re-keyable MAC and the scratch space of the messages
// built with it (a cookie reply), taken from macStates for one message.
type macState struct {
	h      hash.Hash
	load   encoding.BinaryUnmarshaler // h's
	state  [stateLen]byte
	sum    [blake2s.Size128]byte
	cookie [16]byte
	buf    [sizeCookie]byte
}

var macStates = sync.Pool{New: func() any {
	h, _ := blake2s.New128(make([]byte, blake2s.Size))
	m := &macState{h: h}
	m.load, _ = h.(encoding.BinaryUnmarshaler)
	copy(m.state[:], "b2s")
	m.state[stateSize] = blake2s.Size128
	m.state[stateOffset] = blake2s.BlockSize
	return m
}}

func getMAC() *macState  { return macStates.Get().(*macState) }
func putMAC(m *macState) { macStates.Put(m) }

// reset starts a MAC keyed by key (1 to 32 bytes).
func (m *macState) reset(key []byte) {
	for i, v := range blake2sIV {
		if i == 0 {
			v ^= blake2s.Size128 | uint32(len(key))<<8 | 1<<16 | 1<<24
		}
		binary.BigEndian.PutUint32(m.state[stateH+4*i:], v)
	}
	block := m.state[stateBlock:stateOffset]
	clear(block[copy(block, key):])
	if m.load == nil || m.load.UnmarshalBinary(m.state[:]) != nil {
		// Not x/crypto's layout: a digest of its own (allocated).
		m.h, _ = blake2s.New128(key)
	}
}

// write adds p to the MAC. p escapes (it goes through hash.Hash): a
// caller on the allocation-free path passes memory that is on the heap
// already (a receive buffer, m.buf).
func (m *macState) write(p []byte) { m.h.Write(p) }

// final writes the MAC into m.sum.
func (m *macState) final() { m.h.Sum(m.sum[:0]) }

// mac writes the keyed BLAKE2s-128 of msg into out.
func mac(out []byte, key []byte, msg []byte) {
	m := getMAC()
	m.reset(key)
	m.write(msg)
	m.final()
	copy(out, m.sum[:])
	putMAC(m)
}
