//go:build linux

package wg

import (
	"bytes"
	"net/netip"
	"testing"
	"time"
)

// TestDrops: each datagram the device drops before a session or the
// handshake is counted under its reason, and only there.
func TestDrops(t *testing.T) {
	// The test ages a session by hand: the timers, which read its age,
	// stay still meanwhile.
	pauseTimersForTest.Store(true)
	t.Cleanup(func() { pauseTimersForTest.Store(false) })
	d, l, kc, src := benchRig(t)
	good := sealFor(kc, 1, 7, udp(t, clientIP, hostIP, "good"))
	badTag := bytes.Clone(good)
	badTag[len(badTag)-1] ^= 1
	unknown := bytes.Clone(good)
	unknown[4] ^= 0xff // another receiver index
	now := d.now()
	for _, c := range []struct {
		name string
		msg  []byte
		want DatagramDrop // NumDatagramDrops: not dropped
	}{
		{"three bytes", []byte{4, 0, 0}, DropMalformed},
		{"no message type", []byte{9, 0, 0, 0, 1, 2, 3}, DropMalformed},
		{"a transport message shorter than a keepalive", good[:sizeKeepalive-1], DropMalformed},
		{"an unknown receiver index", unknown, DropNoSession},
		{"a bad tag", badTag, DropDecrypt},
		{"a good message", bytes.Clone(good), NumDatagramDrops},
		{"the good message again", bytes.Clone(good), DropReplay},
	} {
		before := d.Drops()
		l.handle(c.msg, src, now)
		l.flush()
		after := d.Drops()
		for r := range NumDatagramDrops {
			want := before[r]
			if r == c.want {
				want++
			}
			if after[r] != want {
				t.Errorf("%s: %s drops went from %d to %d, want %d", c.name, r, before[r], after[r], want)
			}
		}
	}
	// A session past its time is no session.
	old := kc.created
	kc.created = now - int64(rejectAfterTime) - 1
	l.cValid = false
	before := d.Drops()[DropNoSession]
	l.handle(sealFor(kc, 1, 8, nil), src, now)
	if d.Drops()[DropNoSession] != before+1 {
		t.Error("a message on an expired session is not counted as no_session")
	}
	kc.created = old
}

// TestHandshakeCounters: handshakes with stock wireguard-go peers are
// counted: the site's initiation received, answered and completed; the
// device's own initiation to the client sent, its response received and
// completed. A removed peer's handshakes stay counted.
func TestHandshakeCounters(t *testing.T) {
	r := newRig(t, false)
	if !r.pClient.LastReceived().IsZero() {
		t.Fatal("LastReceived of a peer not heard from is not zero")
	}
	start := time.Now()
	r.pClient.SetEndpoint(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), r.client.port(t)))
	r.site.send(t, udp(t, hostIP, clientIP, "wake up"))
	r.client.expect(t, "wake up", 10*time.Second)
	// Both peers were heard from: the site's initiation and data, the
	// client's response.
	for _, p := range []*Peer{r.pClient, r.pSite} {
		if l := p.LastReceived(); l.Before(start.Add(-time.Second)) || l.After(time.Now()) {
			t.Errorf("LastReceived %v, want between %v and now", l, start)
		}
	}
	s := r.dev.HandshakeStats()
	t.Logf("%+v", s)
	if s.InitiationsReceived < 1 || s.ResponsesSent < 1 || s.InitiationsSent < 1 || s.ResponsesReceived < 1 || s.Completed < 2 || s.Processed < 2 {
		t.Fatalf("stats %+v: want the site's initiation received and answered, the device's initiation sent and answered, both completed", s)
	}
	if s.UnderLoad || s.UnderLoadEntered != 0 || s.Cookies != 0 {
		t.Fatalf("stats %+v: under load with two peers", s)
	}
	r.dev.RemovePeer(r.client.key.PublicKey())
	if c := r.dev.HandshakeStats().Completed; c < s.Completed {
		t.Fatalf("completed handshakes went from %d to %d when a peer was removed", s.Completed, c)
	}
}
