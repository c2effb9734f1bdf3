package packetfuzz

import (
	"bytes"
	"errors"
	"testing"

	"github.com/onramp-net/onramp/dataplane/packet"
)

// FuzzWireGuard holds ClassifyWireGuard against refWireGuard (the receive
// rules of wireguard-go plus the 16-byte padding rule), error kind
// included.
func FuzzWireGuard(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := packet.ClassifyWireGuard(data)
		checkErr(t, err)
		typ, idx, kind := refWireGuard(data)
		if kind != nil {
			if !errors.Is(err, kind) {
				t.Fatalf("ours %v, reference %v", err, kind)
			}
			return
		}
		if err != nil || uint8(m.Type) != typ || m.Index != idx {
			t.Fatalf("ours %+v %v, reference type %d index %#x", m, err, typ, idx)
		}
	})
}

// FuzzQUIC holds ClassifyQUIC against refQUIC, a cursor-based reading of
// the RFC 8999 invariants, error kind included.
func FuzzQUIC(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, shortLen uint8) {
		sl := int(shortLen % 24) // a few out-of-range values
		h, err := packet.ClassifyQUIC(data, sl)
		checkErr(t, err)
		rh, kind := refQUIC(data, sl)
		if kind != nil {
			if !errors.Is(err, kind) {
				t.Fatalf("ours %v, reference %v", err, kind)
			}
			return
		}
		if err != nil {
			t.Fatalf("ours %v, reference accepts", err)
		}
		dcid, dn := h.DCID.Bytes()
		scid, sn := h.SCID.Bytes()
		if h.Long != rh.long || h.Version != rh.version || int(h.DCIDLen) != len(rh.dcid) || int(h.SCIDLen) != len(rh.scid) ||
			dn != min(len(rh.dcid), 20) || sn != min(len(rh.scid), 20) ||
			!bytes.Equal(dcid[:dn], rh.dcid[:dn]) || !bytes.Equal(scid[:sn], rh.scid[:sn]) {
			t.Fatalf("ours %+v, reference %+v", h, rh)
		}
		if h.DCID != packet.ConnIDFrom(rh.dcid) {
			t.Fatal("ConnID not comparable by value")
		}
	})
}
