//go:build linux

package wg

import (
	"bytes"
	"encoding/binary"
	"maps"
	"testing"
	"time"

	"golang.org/x/crypto/blake2s"

	"github.com/onramp-net/onramp/l3router/l3config"
)

// fuzzKey is a key derived from label: the same in every process of a
// fuzzing run, so that a seed made in one is valid in the others.
func fuzzKey(label string) l3config.Key {
	k := l3config.Key(blake2s.Sum256([]byte(label)))
	k[0] &= 248
	k[31] = k[31]&127 | 64
	return k
}

var fuzzTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const (
	fuzzClientIdx    = 0x11111111 // the device's index of its session with the client
	fuzzClientRemote = 0x33333333 // the client's index of it
	fuzzSiteIdx      = 0x22222222 // the device's index of its initiation to the site
)

// fuzzWorld is a device with two peers in a fixed state, the same in
// every process: the client has a session (fixed keys), the device's
// handshake with the site is in progress (fixed ephemeral key and
// timestamp).
type fuzzWorld struct {
	d            *Device
	l            *loop
	client, site *wirePeer
	cs           *wireSession // the client's end of its session
	init         []byte       // the device's initiation to the site
	now          int64
}

func newFuzzWorld(tb testing.TB) *fuzzWorld {
	tb.Helper()
	d, l := protoDeviceKey(tb, fuzzKey("device"))
	w := &fuzzWorld{d: d, l: l, now: d.now()}
	w.client = newWirePeerKey(tb, d, l, "client", fuzzKey("client"))
	w.site = newWirePeerKey(tb, d, l, "site", fuzzKey("site"))

	var k1, k2 [32]byte
	k1[0], k2[0] = 1, 2
	kp := &keypair{peer: w.client.p, created: w.now, local: fuzzClientIdx, remoteIndex: fuzzClientRemote, recv: newAEAD(&k1), send: newAEAD(&k2)}
	d.setIndex(fuzzClientIdx, indexEntry{peer: w.client.p, kp: kp})
	w.client.p.current.Store(kp)
	w.cs = &wireSession{local: fuzzClientRemote, remote: fuzzClientIdx, send: newAEAD(&k1), recv: newAEAD(&k2)}

	p := w.site.p
	p.mu.Lock()
	w.init = make([]byte, sizeInitiation)
	p.hs.ephPriv = fuzzKey("device ephemeral")
	if err := d.id.createInitiation(&p.hs, w.init, &p.remote, fuzzSiteIdx, fuzzTime); err != nil {
		tb.Fatal(err)
	}
	p.lastMAC1 = addMACs(w.init, p.remote.mac1Key[:], nil)
	p.hsState, p.hsStarted, p.lastInitSent = hsInitSent, w.now, w.now
	p.initAt.Store(w.now)
	p.mu.Unlock()
	d.setIndex(fuzzSiteIdx, indexEntry{peer: p})
	return w
}

// valid returns the messages the world's device takes: the client's
// transport messages, initiations from both peers, the site's response
// and cookie reply to the device's initiation.
func (w *fuzzWorld) valid(tb testing.TB) [][]byte {
	resp, _ := w.site.respondWith(w.init, fuzzKey("site response ephemeral"), 0x66666666)
	return [][]byte{
		w.client.transportCtr(w.cs, 7, udp(tb, clientIP, hostIP, "fuzz")),
		w.client.transportCtr(w.cs, 8, nil),
		w.client.initiationWith(fuzzKey("client ephemeral"), 0x44444444, fuzzTime),
		w.site.initiationWith(fuzzKey("site ephemeral"), 0x55555555, fuzzTime),
		resp,
		w.site.cookieReply(w.init, w.init, [16]byte{9}, make([]byte, 24)),
	}
}

// worldState is the state of both peers and the device's indices.
type worldState struct {
	client, site peerState
	index        map[uint32]indexEntry
}

func (w *fuzzWorld) state() worldState {
	w.d.idxMu.RLock()
	idx := maps.Clone(w.d.index)
	w.d.idxMu.RUnlock()
	return worldState{client: stateOf(w.client.p), site: stateOf(w.site.p), index: idx}
}

func (s worldState) equal(o worldState) bool {
	return s.client == o.client && s.site == o.site && maps.Equal(s.index, o.index)
}

// isHandshake reports whether msg has the size of a message that carries
// mac1 (an initiation or a response).
func isHandshake(msg []byte) bool { return len(msg) == sizeInitiation || len(msg) == sizeResponse }

// authentic reports whether msg is one of valid up to the bytes no key
// authenticates: mac2 (not checked when not under load) and, if remac (its
// mac1 was made again), the sender index (which only mac1 covers).
func authentic(msg []byte, valid [][]byte, remac bool) bool {
	for _, v := range valid {
		if len(v) != len(msg) {
			continue
		}
		n := len(v)
		switch {
		case isHandshake(v) && remac:
			if bytes.Equal(msg[:4], v[:4]) && bytes.Equal(msg[8:n-32], v[8:n-32]) {
				return true
			}
		case isHandshake(v):
			if bytes.Equal(msg[:n-16], v[:n-16]) {
				return true
			}
		case bytes.Equal(msg, v):
			return true
		}
	}
	return false
}

// FuzzDatagram feeds arbitrary datagrams to the device's receive path, in
// a fixed world (fuzzWorld), seeded with the valid messages of that world:
// transport messages of a session, initiations, a response and a cookie
// reply with real MACs, so that mutations reach the handshake parser.
// With remac, a handshake-sized datagram gets a valid mac1 first (the
// Noise checks behind it are then what refuses it). Invariants: no panic;
// a datagram that is not one of the valid ones (up to what no key
// authenticates) changes no state, and unless it passed mac1, allocates
// nothing; a valid one is taken.
func FuzzDatagram(f *testing.F) {
	valid := newFuzzWorld(f).valid(f)
	for _, v := range valid {
		f.Add(v, false)
		f.Add(v, true)
		tampered := bytes.Clone(v)
		tampered[len(v)/2] ^= 1
		f.Add(tampered, false)
	}
	for _, n := range []int{sizeInitiation, sizeResponse, sizeCookie, sizeKeepalive} {
		m := make([]byte, n)
		m[0] = byte(map[int]int{sizeInitiation: 1, sizeResponse: 2, sizeCookie: 3, sizeKeepalive: 4}[n])
		f.Add(m, true)
	}
	// A world that a datagram left as it was serves the next one (making
	// one takes milliseconds); any other is closed.
	var world *fuzzWorld
	var owner *ownedTB
	f.Cleanup(func() {
		if owner != nil {
			owner.close()
		}
	})
	f.Fuzz(func(t *testing.T, b []byte, remac bool) {
		if world == nil {
			owner = &ownedTB{TB: t}
			world = newFuzzWorld(owner)
		}
		w, keep := world, false
		defer func() {
			if !keep {
				owner.close()
				world, owner = nil, nil
			}
		}()
		msg := bytes.Clone(b)
		if remac && isHandshake(msg) {
			n := len(msg)
			mac(msg[n-32:n-16], w.d.id.mac1Key[:], msg[:n-32])
		}
		auth := authentic(msg, valid, remac)
		before := w.state()
		w.client.deliver(msg, w.now)
		after := w.state()
		if auth {
			if after.equal(before) {
				t.Fatalf("a valid message (%d bytes, type %d) was not taken", len(msg), msg[0])
			}
			return
		}
		if !after.equal(before) {
			t.Fatalf("a datagram that is no valid message changed the state:\n before %+v\n after  %+v", before, after)
		}
		if isHandshake(msg) && w.d.id.checkMAC1(msg) {
			return // the Noise handshake allocates (and spends the device's budget)
		}
		buf := make([]byte, len(msg))
		allocs := testing.AllocsPerRun(10, func() {
			copy(buf, msg)
			w.l.cValid = false
			w.l.handle(buf, w.client.addr, w.now)
			w.l.flush()
		})
		w.l.cKP = nil
		if allocs != 0 && !raceEnabled { // the race detector's sync.Pool drops items at random
			t.Fatalf("a refused datagram (%d bytes, type %d) allocated %v times", len(msg), msg[0], allocs)
		}
		keep = true
	})
}

// ownedTB is a testing.TB whose cleanups run when its owner closes it:
// what is made with it outlives the test that made it.
type ownedTB struct {
	testing.TB
	cleanups []func()
}

func (o *ownedTB) Cleanup(f func()) { o.cleanups = append(o.cleanups, f) }

func (o *ownedTB) close() {
	for i := len(o.cleanups) - 1; i >= 0; i-- {
		o.cleanups[i]()
	}
	o.cleanups = nil
}

// FuzzHandshake runs the handshake state machine through sequences of
// messages between the device and a peer played by the test (the
// client), as a program of 3-byte steps (op, a, b): the client initiates,
// sends on one of its sessions (the next counter, an old one, the last
// ones allowed), answers the device's initiation or its last message with
// a cookie reply; the device initiates; a message sent before arrives
// again, or with an authenticated byte changed; time passes and the timers
// run. After each step it checks what the device must have done (an
// initiation is answered unless within the flood gap; a response completes
// the handshake in progress, if it is the one; a transport message on a
// live session with a new counter is taken; a replayed or tampered one is
// refused and changes nothing) and the invariants: no state of a
// handshake that is not in progress (key hygiene); every index names the
// handshake in progress or a session the peer holds, at most four; the
// other peer (the site) is untouched.
func FuzzHandshake(f *testing.F) {
	f.Add([]byte{0, 1, 0, 1, 0, 0, 1, 1, 0, 2, 0, 0, 3, 0, 0, 1, 2, 0, 4, 3, 0, 5, 2, 7})
	f.Add([]byte{2, 0, 0, 3, 0, 0, 1, 0, 0, 6, 255, 0, 6, 255, 0, 1, 0, 0, 0, 30, 0, 4, 0, 0})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 40, 0, 7, 0, 0, 2, 0, 0, 7, 0, 0, 3, 0, 0, 1, 192, 0, 1, 0, 0, 1, 128, 0})
	f.Add([]byte{2, 0, 0, 6, 100, 0, 6, 100, 0, 6, 100, 0, 3, 0, 0, 13, 40, 3, 5, 0, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, prog []byte) {
		h := &hsRun{t: t, w: newFuzzWorld(t)}
		h.c = h.w.client
		h.now = h.w.now
		h.site, h.siteIdx = stateOf(h.w.site.p), indexOf(h.w.d, h.w.site.p)
		for step := 0; len(prog) >= 3 && step < 48; step++ {
			op, a, b := prog[0], prog[1], prog[2]
			prog = prog[3:]
			h.now += int64(op>>3) * int64(time.Millisecond) // 0 to 31 ms between steps
			h.step(op&7, a, b)
			h.check(op & 7)
		}
	})
}

// hsRun is the state of one FuzzHandshake program.
type hsRun struct {
	t        *testing.T
	w        *fuzzWorld
	c        *wirePeer
	now      int64
	sessions []*fuzzSession
	resp     []byte       // the client's response to the device's last initiation, not yet delivered
	respS    *fuzzSession // and its session
	history  []sentMsg
	site     peerState
	siteIdx  map[uint32]*keypair
}

type fuzzSession struct {
	*wireSession
	taken []uint64 // counters the device took
}

type sentMsg struct {
	msg    []byte
	taken  bool
	cookie bool
}

// deliver delivers msg from the client and reports whether it changed the
// client's state.
func (h *hsRun) deliver(msg []byte) bool {
	before, idx := stateOf(h.c.p), indexOf(h.w.d, h.c.p)
	h.c.deliver(msg, h.now)
	taken := stateOf(h.c.p) != before || !maps.Equal(indexOf(h.w.d, h.c.p), idx)
	h.history = append(h.history, sentMsg{msg: msg, taken: taken, cookie: binary.LittleEndian.Uint32(msg) == typeCookie})
	return taken
}

func (h *hsRun) step(op, a, b byte) {
	t, d, c := h.t, h.w.d, h.c
	switch op {
	case 0: // the client initiates
		before := stateOf(c.p)
		want := !before.seenInit || h.now-before.lastInitRecv > int64(initiationMinGap)
		c.drain()
		taken := h.deliver(c.initiation())
		answered := stateOf(c.p).handshakes == before.handshakes+1
		if answered != want {
			t.Fatalf("initiation %.1f ms after the last one answered: %v, want %v", float64(h.now-before.lastInitRecv)/1e6, answered, want)
		}
		if !answered && taken {
			t.Fatal("a refused initiation changed the state")
		}
		if answered {
			s, err := c.consumeResponse(c.expect(typeResponse))
			if err != nil {
				t.Fatalf("the device's response: %v", err)
			}
			h.sessions = append(h.sessions, &fuzzSession{wireSession: s})
		}
	case 1: // the client sends a keepalive on one of its sessions
		if len(h.sessions) == 0 {
			return
		}
		s := h.sessions[int(a)%len(h.sessions)]
		switch b % 4 {
		case 0, 1: // the next counter
			e := d.lookup(s.remote)
			want := e.peer == c.p && e.kp.fresh(h.now) && s.ctr < rejectAfterMessages
			ctr := s.ctr
			taken := h.deliver(c.transport(s.wireSession, nil))
			if taken != want {
				t.Fatalf("keepalive with counter %d on a session the device holds (%v) and live: taken %v", ctr, e.kp != nil, taken)
			}
			if taken {
				s.taken = append(s.taken, ctr)
			}
		case 2: // a counter the device took
			if len(s.taken) == 0 {
				return
			}
			ctr := s.taken[int(a)%len(s.taken)]
			if h.deliver(c.transportCtr(s.wireSession, ctr, nil)) {
				t.Fatalf("a keepalive replayed with counter %d was taken", ctr)
			}
		case 3: // the last counters allowed
			s.ctr = rejectAfterMessages - 1 - uint64(a&1)
		}
	case 2: // the device initiates
		c.drain()
		before := stateOf(c.p)
		d.initiate(c.p, h.now)
		if after := stateOf(c.p); after.hs != before.hs && after.hsState == hsInitSent {
			var s *wireSession
			h.resp, s = c.respond(c.expect(typeInitiation))
			h.respS = &fuzzSession{wireSession: s}
		}
	case 3: // the client's response to the device's last initiation arrives
		if h.resp == nil {
			return
		}
		before := stateOf(c.p)
		want := before.hsState == hsInitSent && before.hs.localIndex == binary.LittleEndian.Uint32(h.resp[8:12])
		taken := h.deliver(h.resp)
		completed := stateOf(c.p).handshakes == before.handshakes+1
		if completed != want || !completed && taken {
			t.Fatalf("a response to the handshake in progress (%v) completed it: %v; changed the state: %v", want, completed, taken)
		}
		if completed {
			h.sessions = append(h.sessions, h.respS)
		}
		h.resp = nil
	case 4: // a message delivered before arrives again
		if len(h.history) == 0 {
			return
		}
		m := h.history[int(a)%len(h.history)]
		if h.deliver(m.msg) && m.taken && !m.cookie {
			t.Fatalf("a message taken before (%d bytes, type %d) was taken again", len(m.msg), m.msg[0])
		}
	case 5: // a message delivered before arrives with an authenticated byte changed
		if len(h.history) == 0 {
			return
		}
		m := bytes.Clone(h.history[int(a)%len(h.history)].msg)
		remac := b&1 == 1 && isHandshake(m)
		// The authenticated bytes: all of a transport message or a
		// cookie reply; of a handshake message all but mac2, or, if mac1
		// is made again, all but the sender index and the MACs.
		n := len(m)
		var pos []int
		for i := range n {
			switch {
			case !isHandshake(m):
			case remac && (i >= 4 && i < 8 || i >= n-32):
				continue
			case i >= n-16:
				continue
			}
			pos = append(pos, i)
		}
		m[pos[int(b)*7%len(pos)]] ^= a | 1
		if remac {
			mac(m[n-32:n-16], d.id.mac1Key[:], m[:n-32])
		}
		if h.deliver(m) {
			t.Fatalf("a tampered message (%d bytes, type %d) was taken", n, m[0])
		}
	case 6: // time passes (up to 64 s) and the timers run
		h.now += int64(a) * int64(250*time.Millisecond)
		d.tick(c.p, h.now)
	case 7: // the client answers the device's last message with a cookie reply
		st := stateOf(c.p)
		var index uint32
		switch {
		case st.hsState == hsInitSent:
			index = st.hs.localIndex
		case st.next != nil:
			index = st.next.local
		default:
			return
		}
		to := make([]byte, 8)
		binary.LittleEndian.PutUint32(to[4:], index)
		bound := append(make([]byte, 0, 32), st.lastMAC1[:]...)
		bound = append(bound, make([]byte, 16)...)
		h.deliver(c.cookieReply(to, bound, [16]byte{a, b}, nil))
		if after := stateOf(c.p); !after.hasCookie || after.cookie != [16]byte{a, b} {
			t.Fatal("the device did not take a cookie reply to its last message")
		}
	}
}

// check checks the invariants after a step (op).
func (h *hsRun) check(op byte) {
	t, d, c := h.t, h.w.d, h.c
	st := stateOf(c.p)
	if st.hsState == hsNone && st.hs != (handshake{}) {
		t.Fatalf("after step %d: no handshake in progress but its state is kept: %+v", op, st.hs)
	}
	idx := indexOf(d, c.p)
	held := map[*keypair]bool{}
	for _, kp := range []*keypair{st.current, st.previous, st.next} {
		if kp == nil {
			continue
		}
		if held[kp] {
			t.Fatalf("after step %d: a session in two slots", op)
		}
		held[kp] = true
		if idx[kp.local] != kp {
			t.Fatalf("after step %d: a session of the peer's is not indexed", op)
		}
	}
	for i, kp := range idx {
		switch {
		case kp == nil && (st.hsState != hsInitSent || i != st.hs.localIndex):
			t.Fatalf("after step %d: index %x names a handshake not in progress", op, i)
		case kp != nil && (!held[kp] || kp.local != i):
			t.Fatalf("after step %d: index %x names a session the peer does not hold", op, i)
		}
	}
	if len(idx) > 4 {
		t.Fatalf("after step %d: %d indices for one peer", op, len(idx))
	}
	if stateOf(h.w.site.p) != h.site || !maps.Equal(indexOf(d, h.w.site.p), h.siteIdx) {
		t.Fatalf("after step %d: the other peer's state changed", op)
	}
}
