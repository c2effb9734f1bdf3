package steer

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/onramp-net/onramp/dataplane/packet"
)

// udp returns payload behind a UDP header.
func udp(payload []byte) []byte {
	b := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(b[0:], 40000)
	binary.BigEndian.PutUint16(b[2:], 7844)
	binary.BigEndian.PutUint16(b[4:], uint16(8+len(payload)))
	return append(b, payload...)
}

// issued returns a connection ID generator i issues.
func issued(t testing.TB, i int) []byte {
	t.Helper()
	g, err := NewConnIDGenerator(i)
	if err != nil {
		t.Fatal(err)
	}
	id, err := g.GenerateConnectionID()
	if err != nil {
		t.Fatal(err)
	}
	return id.Bytes()
}

func short(dcid []byte, n int) []byte {
	b := append([]byte{0x40 | 0x01}, dcid...)
	for len(b) < n {
		b = append(b, byte(len(b)))
	}
	return b
}

func long(first byte, version uint32, dcid, scid []byte, n int) []byte {
	b := binary.BigEndian.AppendUint32([]byte{first}, version)
	b = append(b, byte(len(dcid)))
	b = append(b, dcid...)
	b = append(b, byte(len(scid)))
	b = append(b, scid...)
	for len(b) < n {
		b = append(b, byte(len(b)))
	}
	return b
}

// generated returns QUIC packets with IDs the edge issues (for sockets
// 0 to 255) and others: short headers, each long-header type of versions
// 1 and 2, unknown versions, Initials at and under 1200 bytes, IDs of
// other lengths, without the marker, cut short.
func generated(t testing.TB) [][]byte {
	var out [][]byte
	foreign := bytes.Repeat([]byte{0x9a}, ConnIDLen) // the marker, socket 0x9a
	other := bytes.Repeat([]byte{0x1c}, ConnIDLen)   // no marker
	for _, i := range []int{0, 1, 2, 3, 5, 7, 8, 63, 64, 127, 255} {
		id := issued(t, i)
		out = append(out, short(id, 1+ConnIDLen), short(id, 40), short(id, 1300))
		for _, v := range []uint32{packet.QUICVersion1, packet.QUICVersion2, 0, 0x1a2a3a4a} {
			for typ := range byte(4) {
				out = append(out, long(0xc0|typ<<4, v, id, other[:4], 60), long(0xc0|typ<<4, v, id, nil, 1200),
					long(0xc0|typ<<4, v, id, other, 1199), long(0x80|typ<<4, v, id, other, 1250))
			}
		}
	}
	for _, id := range [][]byte{foreign, other, other[:4], bytes.Repeat([]byte{0x80}, 20), nil} {
		out = append(out, short(id, 30), long(0xc0, packet.QUICVersion1, id, other, 1200), long(0xe0, packet.QUICVersion1, id, other, 100))
	}
	var cut [][]byte
	for _, p := range out {
		for _, n := range []int{0, 1, 2, 3, 5, 6, 7, 8, 9, 14, 15} {
			if n < len(p) {
				cut = append(cut, p[:n])
			}
		}
		f := bytes.Clone(p)
		f[0] ^= 0x40
		cut = append(cut, f)
	}
	return append(out, cut...)
}

func TestConnIDGenerator(t *testing.T) {
	seen := map[string]bool{}
	for i := range MaxSockets {
		g, err := NewConnIDGenerator(i)
		if err != nil {
			t.Fatal(err)
		}
		if g.ConnectionIDLen() != ConnIDLen {
			t.Fatalf("ConnectionIDLen %d", g.ConnectionIDLen())
		}
		for range 4 {
			id, err := g.GenerateConnectionID()
			if err != nil {
				t.Fatal(err)
			}
			if got, ok := ConnIDSocket(id.Bytes()); !ok || got != i {
				t.Fatalf("ID %x of socket %d names socket %d (%v)", id.Bytes(), i, got, ok)
			}
			if seen[string(id.Bytes())] {
				t.Fatalf("ID %x issued twice", id.Bytes())
			}
			seen[string(id.Bytes())] = true
		}
	}
	if _, err := NewConnIDGenerator(MaxSockets); err == nil {
		t.Fatal("NewConnIDGenerator(MaxSockets) succeeded")
	}
	// The random bits vary: every bit below the marker of the first byte
	// and every bit of bytes 2 on is set in some ID and clear in another.
	var or, and [ConnIDLen]byte
	for i := range and {
		and[i] = 0xff
	}
	g, _ := NewConnIDGenerator(3)
	for range 256 {
		id, _ := g.GenerateConnectionID()
		for i, b := range id.Bytes() {
			or[i] |= b
			and[i] &= b
		}
	}
	if or[0]&^and[0] != 0x3f {
		t.Fatalf("first byte: random bits %08b, want 00111111", or[0]&^and[0])
	}
	for i := 2; i < ConnIDLen; i++ {
		if or[i]&^and[i] != 0xff {
			t.Fatalf("byte %d: random bits %08b", i, or[i]&^and[i])
		}
	}
	if a := testing.AllocsPerRun(100, func() { _, _ = g.GenerateConnectionID() }); a != 0 && !raceEnabled {
		t.Fatalf("GenerateConnectionID allocates %.0f times", a)
	}
}

func BenchmarkConnIDGenerator(b *testing.B) {
	g, _ := NewConnIDGenerator(5)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := g.GenerateConnectionID(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkQUICSocket(b *testing.B) {
	p := short(issued(b, 5), 1200)
	b.ReportAllocs()
	for b.Loop() {
		QUICSocket(p, 12345, 8)
	}
}
