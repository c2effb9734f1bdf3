//go:build linux

package wg

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/onramp-net/onramp/l3router/l3config"
)

// The protocol's defences, played against the device by a wirePeer (or an
// attacker built like one), as wireguard-go's noise and cookie tests do:
// each message the device must refuse changes none of its state, gets no
// answer and is counted.

// rejected returns how many handshake messages the device refused for
// reason so far.
func rejected(d *Device, reason string) uint64 { return d.HandshakeStats().Rejected[reason] }

// refused delivers msg from w at now and checks that the device answers
// nothing, leaves w's peer as it was and counts one refusal for reason.
func (w *wirePeer) refused(what, reason string, msg []byte, now int64) {
	w.tb.Helper()
	before, idx, n := stateOf(w.p), indexOf(w.d, w.p), rejected(w.d, reason)
	w.deliver(msg, now)
	w.nothing()
	unchanged(w.tb, what, w.d, w.p, before, idx)
	if got := rejected(w.d, reason) - n; got != 1 {
		w.tb.Errorf("%s: %d refusals counted as %s, want 1", what, got, reason)
	}
}

// TestInitiationReplay: an initiation seen before, one with the same
// timestamp and one with an older timestamp are refused as replays (an
// attacker who recorded a peer's initiation cannot start a session with
// it, nor push the peer's sessions aside); a newer one is answered.
func TestInitiationReplay(t *testing.T) {
	d, l := protoDevice(t)
	w := newWirePeer(t, d, l, "client")
	now := d.now()
	first := w.initiation()
	w.deliver(first, now)
	w.expect(typeResponse)
	sameTime := w.initiationAt(w.ts)
	older := w.initiationAt(w.ts.Add(-time.Second))
	for i, c := range []struct {
		name string
		msg  []byte
	}{{"the same initiation again", first}, {"an initiation with the same timestamp", sameTime}, {"an initiation with an older timestamp", older}} {
		now += int64(time.Second) // past the flood gap: only the timestamp refuses it
		w.refused(fmt.Sprintf("%s (%d)", c.name, i), "replay", c.msg, now)
	}
	now += int64(time.Second)
	w.deliver(w.initiation(), now)
	w.expect(typeResponse)
	if n := w.p.Stats().Handshakes; n != 2 {
		t.Fatalf("%d handshakes, want 2: the first and the newer one", n)
	}
}

// TestInitiationFlood: of initiations from one peer less than 1/50 s
// apart (wireguard-go's HandshakeInitationRate), each newer than the
// last, only the first is answered; the next one after the gap is.
func TestInitiationFlood(t *testing.T) {
	d, l := protoDevice(t)
	w := newWirePeer(t, d, l, "client")
	start := d.now()
	w.deliver(w.initiation(), start)
	w.expect(typeResponse)
	before, idx, n := stateOf(w.p), indexOf(d, w.p), rejected(d, "flood")
	const flood = 40
	for i := 1; i <= flood; i++ {
		// The last one arrives exactly at the gap.
		w.deliver(w.initiation(), start+int64(i)*int64(initiationMinGap)/flood)
	}
	w.nothing()
	unchanged(t, "a flood of initiations", d, w.p, before, idx)
	if got := rejected(d, "flood") - n; got != flood {
		t.Errorf("%d floods counted, want %d", got, flood)
	}
	w.deliver(w.initiation(), start+int64(initiationMinGap)+1)
	w.expect(typeResponse)
	if n := w.p.Stats().Handshakes; n != 2 {
		t.Fatalf("%d handshakes, want 2", n)
	}
}

// TestBadMAC1: a handshake message whose mac1 is not keyed for the
// device (a scan, a message for another server, a corrupted one) is
// dropped before anything else: no answer, no state, no handshake budget
// spent, nothing allocated.
func TestBadMAC1(t *testing.T) {
	d, l := protoDevice(t)
	w := newWirePeer(t, d, l, "client")
	other := newWirePeer(t, d, l, "site")
	now := d.now()

	flipped := w.initiation()
	flipped[sizeInitiation-20] ^= 1
	// Keyed for another device: the message is otherwise the peer's.
	elsewhere := w.initiation()
	addMACs(elsewhere, bytes.Repeat([]byte{7}, 32), nil)
	// A response to the device's initiation, its mac1 broken.
	d.initiate(other.p, now)
	resp, _ := other.respond(other.expect(typeInitiation))
	badResp := bytes.Clone(resp)
	badResp[sizeResponse-32] ^= 0x80

	for _, c := range []struct {
		name string
		from *wirePeer
		msg  []byte
	}{{"an initiation with a flipped mac1 bit", w, flipped}, {"an initiation keyed for another device", w, elsewhere}, {"a response with a broken mac1", other, badResp}} {
		before, idx, st := stateOf(c.from.p), indexOf(d, c.from.p), d.HandshakeStats()
		c.from.deliver(c.msg, now)
		c.from.nothing()
		unchanged(t, c.name, d, c.from.p, before, idx)
		if after := d.HandshakeStats(); after.Processed != st.Processed || after.OverBudget != st.OverBudget || after.Cookies != st.Cookies {
			t.Errorf("%s: handshake stats went from %+v to %+v, want no change (dropped before the budget)", c.name, st, after)
		}
		msg := bytes.Clone(c.msg)
		if a := testing.AllocsPerRun(100, func() { l.handle(msg, c.from.addr, now) }); a != 0 {
			t.Errorf("%s: %v allocations, want 0", c.name, a)
		}
	}
	// The genuine response still completes the handshake.
	other.deliver(resp, now)
	if n := other.p.Stats().Handshakes; n != 1 {
		t.Fatalf("the genuine response after the bad one: %d handshakes, want 1", n)
	}
}

// TestBadMAC2UnderLoad: under load, an initiation without a valid mac2
// (none, a wrong one, or the cookie of another source address) gets a
// cookie reply and is not processed; with the cookie of its address it is.
func TestBadMAC2UnderLoad(t *testing.T) {
	underLoadForTest.Store(true)
	t.Cleanup(func() { underLoadForTest.Store(false) }) // runs after the device's cleanup
	d, l := protoDevice(t)
	w := newWirePeer(t, d, l, "client")
	now := d.now()

	noMAC2 := w.initiation()
	wrongMAC2 := w.initiation()
	rand.Read(wrongMAC2[sizeInitiation-16:])
	elsewhere := sink(t)
	for _, c := range []struct {
		name string
		msg  []byte
	}{{"an initiation without mac2", noMAC2}, {"an initiation with a wrong mac2", wrongMAC2}} {
		before, idx, st := stateOf(w.p), indexOf(d, w.p), d.HandshakeStats()
		w.deliver(c.msg, now)
		reply := w.expect(typeCookie)
		w.nothing()
		unchanged(t, c.name, d, w.p, before, idx)
		after := d.HandshakeStats()
		if after.Cookies != st.Cookies+1 || after.Proven != st.Proven {
			t.Errorf("%s: cookies %d -> %d, proven %d -> %d; want one cookie, none proven", c.name, st.Cookies, after.Cookies, st.Proven, after.Proven)
		}
		if binary.LittleEndian.Uint32(reply[4:8]) != binary.LittleEndian.Uint32(c.msg[4:8]) {
			t.Errorf("%s: the cookie reply names index %x, want the initiation's sender %x", c.name, reply[4:8], c.msg[4:8])
		}
	}
	// The peer takes the cookie of its last message...
	last := w.initiation()
	w.deliver(last, now)
	var mac1 [16]byte
	copy(mac1[:], last[sizeInitiation-32:])
	cookie, err := consumeCookie(w.expect(typeCookie), &w.dev, &mac1)
	if err != nil {
		t.Fatal(err)
	}
	// ...which proves its own address, not another's.
	stolen := w.initiation()
	addMACs(stolen, w.dev.mac1Key[:], &cookie)
	before, idx, st := stateOf(w.p), indexOf(d, w.p), d.HandshakeStats()
	w.deliverFrom(stolen, elsewhere, now)
	unchanged(t, "an initiation with the cookie of another address", d, w.p, before, idx)
	if after := d.HandshakeStats(); after.Proven != st.Proven || after.Cookies != st.Cookies+1 {
		t.Errorf("an initiation with the cookie of another address: %+v -> %+v, want a cookie reply and nothing proven", st, after)
	}
	proven := w.initiation()
	addMACs(proven, w.dev.mac1Key[:], &cookie)
	w.deliver(proven, now)
	w.expect(typeResponse)
	if st := d.HandshakeStats(); st.Proven != 1 || w.p.Stats().Handshakes != 1 {
		t.Fatalf("with the cookie: proven %d, handshakes %d; want 1 and 1", st.Proven, w.p.Stats().Handshakes)
	}
}

// lowOrder are the Curve25519 points whose DH with any key is all zeros
// or known to all (libsodium's blocklist): 0, 1, the two points of order
// 8, p-1, p and p+1, and some of them with the (ignored) top bit set.
var lowOrder = func() [][]byte {
	var out [][]byte
	for _, h := range []string{
		"0000000000000000000000000000000000000000000000000000000000000000",
		"0100000000000000000000000000000000000000000000000000000000000000",
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
		"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"0000000000000000000000000000000000000000000000000000000000000080",
		"0100000000000000000000000000000000000000000000000000000000000080",
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b880",
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
	} {
		b, err := hex.DecodeString(h)
		if err != nil {
			panic(err)
		}
		out = append(out, b)
	}
	return out
}()

// TestLowOrderKeys: a low-order or all-zero public key, whose DH with any
// key is all zeros, is refused wherever it appears: as a peer's static key
// (AddPeer; an initiation claiming one is from no peer), as the ephemeral
// key of an initiation, as the ephemeral key of a response (where the
// handshake in progress survives it).
func TestLowOrderKeys(t *testing.T) {
	d, l := protoDevice(t)
	w := newWirePeer(t, d, l, "client")
	now := d.now()
	for _, pt := range lowOrder {
		if _, err := d.AddPeer("site", l3config.Key(pt)); err == nil {
			t.Errorf("AddPeer with the low-order key %x succeeded", pt)
		}
	}
	genuine := w.initiation()
	for _, pt := range lowOrder {
		w.refused(fmt.Sprintf("an initiation with the low-order ephemeral key %x", pt), "invalid", w.withEphemeral(genuine, pt), now)
	}
	// An initiation whose static key is low-order comes from no peer.
	for _, pt := range lowOrder[:2] {
		liar := newWirePeer(t, d, l, "")
		liar.id.pub = l3config.Key(pt)
		n := rejected(d, "unknown_peer")
		liar.deliver(liar.initiation(), now)
		liar.nothing()
		if got := rejected(d, "unknown_peer") - n; got != 1 {
			t.Errorf("initiation with static key %x: %d refusals counted as unknown_peer, want 1", pt, got)
		}
	}
	// The device's own initiation, answered with low-order ephemerals.
	d.initiate(w.p, now)
	resp, _ := w.respond(w.expect(typeInitiation))
	for _, pt := range lowOrder {
		bad := bytes.Clone(resp)
		copy(bad[12:44], pt)
		addMACs(bad, w.dev.mac1Key[:], nil)
		w.refused(fmt.Sprintf("a response with the low-order ephemeral key %x", pt), "invalid", bad, now)
	}
	w.deliver(resp, now)
	if n := w.p.Stats().Handshakes; n != 1 {
		t.Fatalf("the genuine response after the low-order ones: %d handshakes, want 1", n)
	}
}

// TestWrongStaticKey: an initiation from a key that is no peer's, one that
// claims a peer's key without holding it, one encrypted for another
// device, and a response forged without the peer's key are all refused.
func TestWrongStaticKey(t *testing.T) {
	d, l := protoDevice(t)
	w := newWirePeer(t, d, l, "client")
	now := d.now()

	stranger := newWirePeer(t, d, l, "")
	// The impostor knows the client's public key, not its private key.
	impostor := newWirePeer(t, d, l, "")
	impostor.id.pub = w.key.PublicKey()
	// An initiation from the client to another device, with a mac1 for
	// this one.
	elsewhere := newWirePeer(t, d, l, "")
	elsewhere.id = w.id
	other, err := newRemote(&w.id, newKey(t).PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	other.mac1Key = w.dev.mac1Key
	elsewhere.dev = other
	for _, c := range []struct {
		name, reason string
		from         *wirePeer
	}{
		{"an initiation from a key that is no peer's", "unknown_peer", stranger},
		{"an initiation claiming a peer's key without it", "invalid", impostor},
		{"an initiation encrypted for another device", "invalid", elsewhere},
	} {
		before, idx, n := stateOf(w.p), indexOf(d, w.p), rejected(d, c.reason)
		c.from.deliver(c.from.initiation(), now)
		c.from.nothing()
		w.nothing()
		unchanged(t, c.name, d, w.p, before, idx)
		if got := rejected(d, c.reason) - n; got != 1 {
			t.Errorf("%s: %d refusals counted as %s, want 1", c.name, got, c.reason)
		}
	}
	// A response to the device's initiation from someone who saw it but
	// holds no key: the indices are right, the rest is made up.
	d.initiate(w.p, now)
	init := w.expect(typeInitiation)
	resp, _ := w.respond(init)
	forged := bytes.Clone(resp)
	rand.Read(forged[12:60])
	addMACs(forged, w.dev.mac1Key[:], nil)
	w.refused("a forged response", "invalid", forged, now)
	w.deliver(resp, now)
	if n := w.p.Stats().Handshakes; n != 1 {
		t.Fatalf("the genuine response after the forged one: %d handshakes, want 1", n)
	}
}

// TestStrayResponse: a response to no initiation in progress (an index
// never given, the index of a session, an initiation already answered)
// is refused and changes nothing.
func TestStrayResponse(t *testing.T) {
	d, l := protoDevice(t)
	w := newWirePeer(t, d, l, "client")
	now := d.now()
	d.initiate(w.p, now)
	resp, _ := w.respond(w.expect(typeInitiation))
	unknown := bytes.Clone(resp)
	binary.LittleEndian.PutUint32(unknown[8:12], binary.LittleEndian.Uint32(unknown[8:12])+1)
	addMACs(unknown, w.dev.mac1Key[:], nil)

	check := func(name string, msg []byte) {
		t.Helper()
		w.drain()
		w.refused(name, "stray_response", msg, now)
	}
	check("a response to an index never given", unknown)
	w.deliver(resp, now)
	if n := w.p.Stats().Handshakes; n != 1 {
		t.Fatalf("%d handshakes, want 1", n)
	}
	w.drain()
	// The response's receiver index now names the session.
	check("the same response again", resp)
	// A response to the index of a session the peer answered.
	now += int64(time.Second)
	s := w.handshake(now)
	toSession := bytes.Clone(resp)
	binary.LittleEndian.PutUint32(toSession[8:12], s.remote)
	addMACs(toSession, w.dev.mac1Key[:], nil)
	check("a response to a session's index", toSession)
}

// TestCookieReply: the device takes a cookie reply only if it is bound
// to (encrypted with the mac1 of) its last message to the peer, and then
// puts the cookie in its next message's mac2; others change nothing and
// allocate nothing.
func TestCookieReply(t *testing.T) {
	d, l := protoDevice(t)
	w := newWirePeer(t, d, l, "client")
	now := d.now()
	d.initiate(w.p, now)
	first := w.expect(typeInitiation)
	now += int64(rekeyTimeout)
	d.initiate(w.p, now)
	second := w.expect(typeInitiation)

	cookie := [16]byte{1, 2, 3}
	cookieReply := func(msg, bound []byte) []byte { return w.cookieReply(msg, bound, cookie, nil) }
	stale := cookieReply(second, first) // bound to a message the device has replaced
	unknown := cookieReply(second, second)
	binary.LittleEndian.PutUint32(unknown[4:8], binary.LittleEndian.Uint32(unknown[4:8])^1)
	tampered := cookieReply(second, second)
	tampered[40] ^= 1
	for _, c := range []struct {
		name string
		msg  []byte
	}{{"a cookie reply to an older message", stale}, {"a cookie reply to an unknown index", unknown}, {"a tampered cookie reply", tampered}} {
		before, idx := stateOf(w.p), indexOf(d, w.p)
		w.deliver(c.msg, now)
		unchanged(t, c.name, d, w.p, before, idx)
		msg := bytes.Clone(c.msg)
		if a := testing.AllocsPerRun(100, func() { l.handle(msg, w.addr, now) }); a != 0 {
			t.Errorf("%s: %v allocations, want 0", c.name, a)
		}
	}
	w.deliver(cookieReply(second, second), now)
	now += int64(rekeyTimeout)
	d.initiate(w.p, now)
	third := w.expect(typeInitiation)
	var want [16]byte
	mac(want[:], cookie[:], third[:sizeInitiation-16])
	if !bytes.Equal(third[sizeInitiation-16:], want[:]) {
		t.Fatalf("the initiation after the cookie reply has mac2 %x, want %x (keyed by the cookie)", third[sizeInitiation-16:], want)
	}
}

// sessionPair makes a session between the device and w: w initiates it
// (and confirms it) if initiator is false, the device does otherwise.
func sessionPair(t *testing.T, d *Device, w *wirePeer, initiator bool, now int64) (*keypair, *wireSession) {
	t.Helper()
	var s *wireSession
	if initiator {
		d.initiate(w.p, now)
		var resp []byte
		resp, s = w.respond(w.expect(typeInitiation))
		w.deliver(resp, now)
	} else {
		s = w.handshake(now)
	}
	w.drain()
	kp := w.p.current.Load()
	if kp == nil || kp.initiator != initiator {
		t.Fatalf("no current session with initiator %v", initiator)
	}
	return kp, s
}

// TestRekeyAfterMessages: a session that has sent REKEY_AFTER_MESSAGES
// messages is renewed by a new handshake, whichever side started it
// (wireguard-go's keepKeyFreshSending); before that, none starts.
func TestRekeyAfterMessages(t *testing.T) {
	for _, initiator := range []bool{false, true} {
		d, l := protoDevice(t)
		w := newWirePeer(t, d, l, "client")
		now := d.now()
		kp, _ := sessionPair(t, d, w, initiator, now)
		now += int64(rekeyTimeout) // past the last initiation's retransmit guard
		kp.sendCtr.Store(rekeyAfterMessages - 1)
		if !d.sealAndSend(w.p, nil, now) {
			t.Fatal("keepalive not sent")
		}
		w.expect(typeTransport)
		w.nothing()
		if st := stateOf(w.p); st.hsState != hsNone {
			t.Fatalf("initiator %v: a handshake started %d messages before REKEY_AFTER_MESSAGES", initiator, 1)
		}
		if !d.sealAndSend(w.p, nil, now) {
			t.Fatal("keepalive not sent")
		}
		if st := stateOf(w.p); st.hsState != hsInitSent {
			t.Fatalf("initiator %v: no handshake after REKEY_AFTER_MESSAGES messages", initiator)
		}
		w.expect(typeInitiation)
	}
}

// TestRejectAfterMessages: a session sends no message with a counter at
// or past REJECT_AFTER_MESSAGES, and its counter never wraps around to one
// already used; the device takes no message with such a counter.
func TestRejectAfterMessages(t *testing.T) {
	d, l := protoDevice(t)
	w := newWirePeer(t, d, l, "client")
	now := d.now()
	kp, s := sessionPair(t, d, w, false, now)

	kp.sendCtr.Store(rejectAfterMessages - 1)
	if !d.sealAndSend(w.p, nil, now) {
		t.Fatal("the last message a session may send was not sent")
	}
	m := w.expect(typeTransport)
	if ctr := binary.LittleEndian.Uint64(m[8:16]); ctr != rejectAfterMessages-1 {
		t.Fatalf("sent counter %d, want %d", ctr, uint64(rejectAfterMessages-1))
	}
	if _, err := s.open(m); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if d.sealAndSend(w.p, nil, now) {
			t.Fatalf("message %d past REJECT_AFTER_MESSAGES sent", i+1)
		}
	}
	// At the very end of the counter's range: it must not wrap to 0.
	kp.sendCtr.Store(^uint64(0))
	for i := range 3 {
		if d.sealAndSend(w.p, nil, now) {
			t.Fatalf("message %d after the counter's last value sent (counter %d: a nonce used before)", i+1, kp.sendCtr.Load()-1)
		}
	}
	w.nothing()

	rx := w.p.Stats().RxBytes
	w.deliver(w.transportCtr(s, rejectAfterMessages-1, nil), now)
	if w.p.Stats().RxBytes == rx {
		t.Fatal("the message with the last counter a session may use was dropped")
	}
	for _, ctr := range []uint64{rejectAfterMessages, rejectAfterMessages + 1, ^uint64(0)} {
		before, idx := stateOf(w.p), indexOf(d, w.p)
		w.deliver(w.transportCtr(s, ctr, nil), now)
		unchanged(t, "a message with counter "+strconv.FormatUint(ctr, 10), d, w.p, before, idx)
	}
}

// TestRejectAfterTime: a session is used neither way from
// REJECT_AFTER_TIME on: its messages are dropped, packets for the peer
// wait for a new handshake, and the timers drop it.
func TestRejectAfterTime(t *testing.T) {
	d, l := protoDevice(t)
	w := newWirePeer(t, d, l, "client")
	now := d.now()
	kp, s := sessionPair(t, d, w, false, now)
	end := kp.created + int64(rejectAfterTime)

	rx := w.p.Stats().RxBytes
	w.deliver(w.transport(s, nil), end-1)
	if w.p.Stats().RxBytes == rx {
		t.Fatal("a message just before REJECT_AFTER_TIME was dropped")
	}
	before, idx := stateOf(w.p), indexOf(d, w.p)
	w.deliver(w.transport(s, nil), end)
	unchanged(t, "a message at REJECT_AFTER_TIME", d, w.p, before, idx)

	if !d.sealAndSend(w.p, nil, end-1) {
		t.Fatal("no message sent just before REJECT_AFTER_TIME")
	}
	w.expect(typeTransport)
	if d.sealAndSend(w.p, nil, end) {
		t.Fatal("a message sent at REJECT_AFTER_TIME")
	}
	// A packet for the peer waits and starts a handshake.
	pkt := udp(t, hostIP, clientIP, "after the session")
	msg := make([]byte, sizeTransportHdr+len(pkt)+sizeTag)
	copy(msg[sizeTransportHdr:], pkt)
	l.sealAndQueue(w.p, msg, len(pkt), end)
	l.flush()
	w.expect(typeInitiation)
	if st := stateOf(w.p); st.staged != 1 || st.hsState != hsInitSent {
		t.Fatalf("after a send at REJECT_AFTER_TIME: %d staged, handshake state %d; want the packet staged and an initiation", st.staged, st.hsState)
	}
	d.tick(w.p, end)
	for i, e := range indexOf(d, w.p) {
		if e != nil {
			t.Errorf("index %x still names a session after REJECT_AFTER_TIME", i)
		}
	}
	if st := stateOf(w.p); st.current != nil || st.previous != nil || st.next != nil {
		t.Errorf("sessions kept after REJECT_AFTER_TIME: %+v", st)
	}
}
