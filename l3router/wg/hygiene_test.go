//go:build linux

package wg

import (
	"crypto/cipher"
	"runtime"
	"testing"
	"time"

	"github.com/onramp-net/onramp/l3router/l3config"
)

// Key hygiene: what the device keeps of a handshake is zeroed when the
// handshake completes, gives up or its peer is removed, and the keys of a
// session are zeroed once it is dropped (expired, replaced, removed) and
// unreachable.

// pending checks that p has a handshake in progress with its secrets set
// (so that finding them zero later means something).
func pending(t *testing.T, p *Peer) {
	t.Helper()
	st := stateOf(p)
	if st.hsState != hsInitSent || st.hs.ephPriv == (l3config.Key{}) || st.hs.chainKey == ([32]byte{}) || st.hs.hash == ([32]byte{}) {
		t.Fatalf("no handshake in progress with its keys: state %d, %+v", st.hsState, st.hs)
	}
}

// zeroed checks that p keeps nothing of a handshake.
func zeroed(t *testing.T, when string, p *Peer) {
	t.Helper()
	if st := stateOf(p); st.hs != (handshake{}) || st.hsState != hsNone {
		t.Errorf("%s: handshake state %d, %+v; want all zero", when, st.hsState, st.hs)
	}
}

// sessionKeysOf returns where the keys of p's sessions live (inside their
// AEADs).
func sessionKeysOf(t *testing.T, p *Peer) []*[32]byte {
	t.Helper()
	var keys []*[32]byte
	for _, kp := range []*keypair{p.current.Load(), p.previous.Load(), p.next.Load()} {
		if kp == nil {
			continue
		}
		for _, a := range []cipher.AEAD{kp.send, kp.recv} {
			k := aeadKey(a)
			if k == nil {
				t.Fatal("the session's AEAD is not x/crypto's ChaCha20-Poly1305 as aeadKey knows it: its keys cannot be zeroed")
			}
			if *k == ([32]byte{}) {
				t.Fatal("a session's key is zero while in use")
			}
			keys = append(keys, k)
		}
	}
	return keys
}

// eventuallyZero waits (collecting garbage) until every key is zero.
func eventuallyZero(t *testing.T, when string, keys []*[32]byte) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		runtime.GC()
		left := 0
		for _, k := range keys {
			if *k != ([32]byte{}) {
				left++
			}
		}
		if left == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d of %d session keys not zeroed 5 s after the sessions were dropped", when, left, len(keys))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestHandshakeZeroedOnCompletion: once the device's handshake completes,
// its ephemeral key, chain key and hash are zero; answering a peer's
// handshake leaves nothing in the peer's state either.
func TestHandshakeZeroedOnCompletion(t *testing.T) {
	d, l := protoDevice(t)
	w := newWirePeer(t, d, l, "client")
	now := d.now()
	d.initiate(w.p, now)
	pending(t, w.p)
	resp, _ := w.respond(w.expect(typeInitiation))
	w.deliver(resp, now)
	if w.p.Stats().Handshakes != 1 {
		t.Fatal("the handshake did not complete")
	}
	zeroed(t, "after the device's handshake completed", w.p)
	w.handshake(now + int64(time.Second))
	if w.p.Stats().Handshakes != 2 {
		t.Fatal("the peer's handshake did not complete")
	}
	zeroed(t, "after the device answered a handshake", w.p)
}

// TestResponderStateZeroed: the responder's handshake state (its copy of
// the initiator's ephemeral key, chain key and hash) is zeroed by
// createResponse, which ends the handshake for it, and is zeroed by
// consumeInitiation when the initiation fails; the session keys are
// zeroed once they are AEADs.
func TestResponderStateZeroed(t *testing.T) {
	d, l := protoDevice(t)
	w := newWirePeer(t, d, l, "client")
	msg := w.initiation()
	lookup := func(k l3config.Key) *remote {
		if k == w.key.PublicKey() {
			return &w.p.remote
		}
		return nil
	}
	var in initiation
	r, err := d.id.consumeInitiation(&in, msg, lookup)
	if err != nil {
		t.Fatal(err)
	}
	if in.hs.chainKey == ([32]byte{}) || in.hs.hash == ([32]byte{}) || in.hs.remoteEph == ([32]byte{}) {
		t.Fatalf("consumed initiation without state: %+v", in.hs)
	}
	var keys sessionKeys
	in.hs.ephPriv = newKey(t)
	if err := createResponse(make([]byte, sizeResponse), &in.hs, r, 1, &keys); err != nil {
		t.Fatal(err)
	}
	if in.hs != (handshake{}) {
		t.Errorf("after createResponse: %+v, want all zero", in.hs)
	}
	if keys.send == ([32]byte{}) || keys.recv == ([32]byte{}) {
		t.Fatal("no session keys")
	}
	keys.aeads()
	if keys != (sessionKeys{}) {
		t.Errorf("session keys after making the AEADs: %+v, want zero", keys)
	}
	// A tampered initiation leaves nothing behind either.
	msg[100] ^= 1
	if _, err := d.id.consumeInitiation(&in, msg, lookup); err == nil {
		t.Fatal("a tampered initiation was consumed")
	}
	if in != (initiation{}) {
		t.Errorf("after a failed initiation: %+v, want all zero", in)
	}
}

// TestHandshakeZeroedOnGiveUp: a handshake that gets no response is given
// up after REKEY_ATTEMPT_TIME; its state is zero and its index gone (a
// late response to it is a stray).
func TestHandshakeZeroedOnGiveUp(t *testing.T) {
	d, l := protoDevice(t)
	w := newWirePeer(t, d, l, "client")
	now := d.now()
	d.initiate(w.p, now)
	pending(t, w.p)
	late, _ := w.respond(w.expect(typeInitiation))
	d.tick(w.p, now+int64(rekeyAttemptTime)-1)
	pending(t, w.p)
	d.tick(w.p, now+int64(rekeyAttemptTime))
	zeroed(t, "after REKEY_ATTEMPT_TIME", w.p)
	if idx := indexOf(d, w.p); len(idx) != 0 {
		t.Errorf("indices %v kept for a handshake given up", idx)
	}
	n := rejected(d, "stray_response")
	w.deliver(late, now+int64(rekeyAttemptTime))
	if rejected(d, "stray_response") != n+1 || w.p.Stats().Handshakes != 0 {
		t.Error("a response to a handshake given up was not refused as a stray")
	}
}

// TestKeysZeroedOnRemove: removing a peer zeroes its handshake in
// progress and its static secret at once, and its sessions' keys once
// they are unreachable.
func TestKeysZeroedOnRemove(t *testing.T) {
	d, l := protoDevice(t)
	w := newWirePeer(t, d, l, "client")
	now := d.now()
	w.handshake(now) // a session of the peer's
	now += int64(time.Second)
	d.initiate(w.p, now) // and a handshake of the device's in progress
	pending(t, w.p)
	keys := sessionKeysOf(t, w.p)
	if len(keys) == 0 {
		t.Fatal("no session")
	}
	d.RemovePeer(w.key.PublicKey())
	zeroed(t, "after RemovePeer", w.p)
	if w.p.remote.ss != ([32]byte{}) {
		t.Error("the static secret of a removed peer is not zero")
	}
	if idx := indexOf(d, w.p); len(idx) != 0 {
		t.Errorf("indices %v kept for a removed peer", idx)
	}
	eventuallyZero(t, "after RemovePeer", keys)
}

// TestKeysZeroedOnExpiry: a session that expires (REJECT_AFTER_TIME) and
// one replaced by newer ones have their keys zeroed once unreachable; the
// live sessions' keys stay.
func TestKeysZeroedOnExpiry(t *testing.T) {
	d, l := protoDevice(t)
	w := newWirePeer(t, d, l, "client")
	start := d.now()
	w.handshake(start)
	first := sessionKeysOf(t, w.p) // the current session
	w.handshake(start + int64(time.Second))
	second := sessionKeysOf(t, w.p)[:2] // current; the first is previous
	end := start + int64(rejectAfterTime)
	d.tick(w.p, end)
	if kp := w.p.previous.Load(); kp != nil {
		t.Fatal("a session kept at REJECT_AFTER_TIME")
	}
	eventuallyZero(t, "a session expired", first)
	w.handshake(end)                      // the second becomes previous
	w.handshake(end + int64(time.Second)) // and is dropped
	eventuallyZero(t, "a session replaced twice", second)
	for _, k := range sessionKeysOf(t, w.p) {
		if *k == ([32]byte{}) {
			t.Fatal("a live session's key was zeroed")
		}
	}
}

// TestKeysZeroedOnClose: closing the device zeroes every peer's keys.
func TestKeysZeroedOnClose(t *testing.T) {
	d, l := protoDevice(t)
	w := newWirePeer(t, d, l, "client")
	now := d.now()
	w.handshake(now)
	d.initiate(w.p, now+int64(time.Second))
	pending(t, w.p)
	keys := sessionKeysOf(t, w.p)
	d.Close()
	zeroed(t, "after Close", w.p)
	eventuallyZero(t, "after Close", keys)
}
