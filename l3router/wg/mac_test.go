package wg

import (
	"bytes"
	"crypto/rand"
	"testing"

	"golang.org/x/crypto/blake2s"
)

// TestMACState: the re-keyed digest computes what a new
// blake2s.New128(key) does, for every key length and messages around the
// block size, one key after another on the same state.
func TestMACState(t *testing.T) {
	m := getMAC()
	defer putMAC(m)
	msg := make([]byte, 3*blake2s.BlockSize+1)
	rand.Read(msg)
	for klen := 1; klen <= blake2s.Size; klen++ {
		key := make([]byte, klen)
		rand.Read(key)
		for _, n := range []int{0, 1, 18, 63, 64, 65, 116, 128, 129, len(msg)} {
			h, _ := blake2s.New128(key)
			h.Write(msg[:n])
			want := h.Sum(nil)
			m.reset(key)
			m.write(msg[:n])
			m.final()
			if !bytes.Equal(m.sum[:], want) {
				t.Fatalf("key of %d bytes, message of %d: %x, want %x", klen, n, m.sum, want)
			}
			var out [16]byte
			mac(out[:], key, msg[:n])
			if !bytes.Equal(out[:], want) {
				t.Fatalf("mac, key of %d bytes, message of %d: %x, want %x", klen, n, out, want)
			}
		}
	}
	if any(m.h) != any(m.load) {
		t.Fatal("the digest was replaced: x/crypto's blake2s state layout changed, and mac allocates again")
	}
}
