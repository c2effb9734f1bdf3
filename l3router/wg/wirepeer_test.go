//go:build linux

package wg

import (
	"bytes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"maps"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/onramp-net/onramp/l3router"
	"github.com/onramp-net/onramp/l3router/l3config"
)

// The protocol tests play a WireGuard peer with this package's own Noise
// functions (noise.go, themselves checked against stock wireguard-go by
// device_test.go): a wirePeer builds each message it sends, delivers it
// to the device's receive path (a loop's handle, on a clock the test
// sets), and reads what the device sends it from a UDP socket on
// loopback. With a socket seam in the device, deliver and read move onto
// it and the socket goes.

// protoDevice is a device for protocol tests: one loop, timers paused
// (the test calls tick on its own clock), and the loop the test delivers
// through.
func protoDevice(tb testing.TB) (*Device, *loop) {
	tb.Helper()
	return protoDeviceKey(tb, newKey(tb))
}

func protoDeviceKey(tb testing.TB, key l3config.Key) (*Device, *loop) {
	tb.Helper()
	pauseTimersForTest.Store(true)
	tb.Cleanup(func() { pauseTimersForTest.Store(false) }) // runs after the device's cleanup
	d, err := New(Config{PrivateKey: key, Router: testRouter(tb), Loops: 1, Logger: testLogger})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close() })
	return d, &loop{d: d, arena: make([]byte, arenaSize), out4: d.socks4[0].newBatch()}
}

// wirePeer is a WireGuard peer played by the test.
type wirePeer struct {
	tb   testing.TB
	d    *Device
	l    *loop
	key  l3config.Key // its private key
	id   identity
	dev  remote // the device, as its peer
	p    *Peer  // the device's peer for it (nil if it is none)
	conn *net.UDPConn
	addr netip.AddrPort
	ts   time.Time // the clock of its initiations' timestamps
	// hs is the handshake it initiated last.
	hs handshake
}

// wireSession is one of the wirePeer's sessions.
type wireSession struct {
	local, remote uint32 // its index and the device's
	send, recv    cipher.AEAD
	ctr           uint64 // next send counter
}

// newWirePeer makes a peer with a fresh key; named (one of testRouter's
// peers), it is added to the device under that name, with its socket's
// address as endpoint.
func newWirePeer(tb testing.TB, d *Device, l *loop, name string) *wirePeer {
	tb.Helper()
	return newWirePeerKey(tb, d, l, name, newKey(tb))
}

func newWirePeerKey(tb testing.TB, d *Device, l *loop, name string, key l3config.Key) *wirePeer {
	tb.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	w := &wirePeer{tb: tb, d: d, l: l, key: key, id: newIdentity(key), conn: c,
		addr: c.LocalAddr().(*net.UDPAddr).AddrPort(), ts: time.Now()}
	if w.dev, err = newRemote(&w.id, d.PublicKey()); err != nil {
		tb.Fatal(err)
	}
	if name != "" {
		if w.p, err = d.AddPeer(l3router.PeerID(name), key.PublicKey()); err != nil {
			tb.Fatal(err)
		}
		w.p.SetEndpoint(w.addr)
	}
	return w
}

// initiation returns a handshake initiation to the device with a
// timestamp later than the last one's, and keeps its state in w.hs.
func (w *wirePeer) initiation() []byte {
	w.ts = w.ts.Add(20 * time.Millisecond) // more than TAI64N's 2^24 ns resolution
	return w.initiationAt(w.ts)
}

// initiationAt returns an initiation with the timestamp of t.
func (w *wirePeer) initiationAt(t time.Time) []byte {
	return w.initiationWith(newKey(w.tb), randomIndex(), t)
}

// initiationWith returns an initiation with the ephemeral key eph, from
// index, with the timestamp of t.
func (w *wirePeer) initiationWith(eph l3config.Key, index uint32, t time.Time) []byte {
	w.tb.Helper()
	msg := make([]byte, sizeInitiation)
	w.hs.ephPriv = eph
	if err := w.id.createInitiation(&w.hs, msg, &w.dev, index, t); err != nil {
		w.tb.Fatal(err)
	}
	addMACs(msg, w.dev.mac1Key[:], nil)
	return msg
}

// withEphemeral returns a copy of the initiation msg with its ephemeral
// key replaced by pub and mac1 made again: what a peer sending that key
// sends (the rest of the message, encrypted under the real one, does not
// matter: the DH fails first, or must).
func (w *wirePeer) withEphemeral(msg []byte, pub []byte) []byte {
	m := bytes.Clone(msg)
	copy(m[8:40], pub)
	addMACs(m, w.dev.mac1Key[:], nil)
	return m
}

// deliver hands msg to the device as a datagram from w at now. The device
// works on its own copy.
func (w *wirePeer) deliver(msg []byte, now int64) {
	w.deliverFrom(msg, w.addr, now)
}

func (w *wirePeer) deliverFrom(msg []byte, src netip.AddrPort, now int64) {
	w.l.cValid, w.l.used = false, 0
	w.l.handle(bytes.Clone(msg), src, now)
	w.l.flush()
	w.l.cKP = nil
}

// read returns the next datagram the device sent w, waiting up to wait
// (nil if none came).
func (w *wirePeer) read(wait time.Duration) []byte {
	w.tb.Helper()
	buf := make([]byte, 1<<16)
	w.conn.SetReadDeadline(time.Now().Add(wait))
	n, err := w.conn.Read(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		w.tb.Fatal(err)
	}
	return buf[:n]
}

// expect returns the next datagram of type typ the device sent w (the
// device sends on loopback before its handler returns: a short wait is
// plenty), skipping others.
func (w *wirePeer) expect(typ uint32) []byte {
	w.tb.Helper()
	for {
		m := w.read(2 * time.Second)
		if m == nil {
			w.tb.Fatalf("no message of type %d from the device", typ)
		}
		if binary.LittleEndian.Uint32(m) == typ {
			return m
		}
	}
}

// nothing checks that the device sent w nothing (what the device sends,
// it sends before the handler returns).
func (w *wirePeer) nothing() {
	w.tb.Helper()
	if m := w.read(20 * time.Millisecond); m != nil {
		w.tb.Fatalf("the device sent a message of type %d, want none", binary.LittleEndian.Uint32(m))
	}
}

// drain discards what the device sent w so far.
func (w *wirePeer) drain() {
	for w.read(time.Millisecond) != nil {
	}
}

// consumeResponse completes w's handshake with the device's response.
func (w *wirePeer) consumeResponse(msg []byte) (*wireSession, error) {
	var keys sessionKeys
	remote, err := w.id.consumeResponse(msg, &w.hs, &w.dev, &keys)
	if err != nil {
		return nil, err
	}
	s := &wireSession{local: w.hs.localIndex, remote: remote}
	s.send, s.recv = keys.aeads()
	w.hs.clear()
	return s, nil
}

// handshake runs a handshake w initiates at now and returns its session,
// confirmed to the device by a keepalive.
func (w *wirePeer) handshake(now int64) *wireSession {
	w.tb.Helper()
	w.drain()
	w.deliver(w.initiation(), now)
	s, err := w.consumeResponse(w.expect(typeResponse))
	if err != nil {
		w.tb.Fatal(err)
	}
	w.deliver(w.transport(s, nil), now)
	return s
}

// respond answers the device's initiation msg: it returns the response
// (with a fresh local index) and the session.
func (w *wirePeer) respond(msg []byte) ([]byte, *wireSession) {
	return w.respondWith(msg, newKey(w.tb), randomIndex())
}

// respondWith answers the device's initiation msg with the ephemeral key
// eph, from index.
func (w *wirePeer) respondWith(msg []byte, eph l3config.Key, index uint32) ([]byte, *wireSession) {
	w.tb.Helper()
	var in initiation
	r, err := w.id.consumeInitiation(&in, msg, func(k l3config.Key) *remote {
		if k == w.d.PublicKey() {
			return &w.dev
		}
		return nil
	})
	if err != nil {
		w.tb.Fatal(err)
	}
	resp := make([]byte, sizeResponse)
	s := &wireSession{local: index, remote: in.hs.remoteIndex}
	var keys sessionKeys
	in.hs.ephPriv = eph
	if err := createResponse(resp, &in.hs, r, s.local, &keys); err != nil {
		w.tb.Fatal(err)
	}
	s.send, s.recv = keys.aeads()
	addMACs(resp, w.dev.mac1Key[:], nil)
	return resp, s
}

// transport returns a transport message carrying pkt (nil: a keepalive)
// on s, with s's next counter.
func (w *wirePeer) transport(s *wireSession, pkt []byte) []byte {
	m := w.transportCtr(s, s.ctr, pkt)
	s.ctr++
	return m
}

// transportCtr returns a transport message carrying pkt on s with
// counter ctr.
func (w *wirePeer) transportCtr(s *wireSession, ctr uint64, pkt []byte) []byte {
	msg := make([]byte, sizeTransportHdr+len(pkt)+sizeTag)
	putHeader(msg, s.remote, ctr)
	var nonce [12]byte
	binary.LittleEndian.PutUint64(nonce[4:], ctr)
	s.send.Seal(msg[:sizeTransportHdr], nonce[:], pkt, nil)
	return msg
}

// open decrypts a transport message from the device on s.
func (s *wireSession) open(msg []byte) ([]byte, error) {
	if len(msg) < sizeKeepalive || binary.LittleEndian.Uint32(msg) != typeTransport || binary.LittleEndian.Uint32(msg[4:8]) != s.local {
		return nil, errors.New("not a transport message on this session")
	}
	var nonce [12]byte
	copy(nonce[4:], msg[8:16])
	return s.recv.Open(nil, nonce[:], msg[sizeTransportHdr:], nil)
}

// peerState is what the device keeps of a peer that a message may change.
type peerState struct {
	hsState                 int
	hs                      handshake
	lastTimestamp           [12]byte
	lastInitRecv            int64
	seenInit                bool
	cookie, lastMAC1        [16]byte
	hasCookie               bool
	staged                  int
	current, previous, next *keypair
	endpoint                endpoint
	handshakes, rx, tx      uint64
	lastRecv                int64
}

func stateOf(p *Peer) peerState {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := peerState{hsState: p.hsState, hs: p.hs, lastTimestamp: p.lastTimestamp, lastInitRecv: p.lastInitRecv, seenInit: p.seenInit,
		cookie: p.cookie, lastMAC1: p.lastMAC1, hasCookie: p.hasCookie, staged: len(p.staged),
		current: p.current.Load(), previous: p.previous.Load(), next: p.next.Load(),
		handshakes: p.handshakes.Load(), rx: p.rxBytes.Load(), tx: p.txBytes.Load(), lastRecv: p.lastRecv.Load()}
	if ep := p.endpoint.Load(); ep != nil {
		s.endpoint = *ep
	}
	return s
}

// indexOf returns the indices the device has for p: its sessions' and
// (kp nil) its handshake's.
func indexOf(d *Device, p *Peer) map[uint32]*keypair {
	d.idxMu.RLock()
	defer d.idxMu.RUnlock()
	m := map[uint32]*keypair{}
	for i, e := range d.index {
		if e.peer == p {
			m[i] = e.kp
		}
	}
	return m
}

// unchanged fails the test if p's state or its indices differ from
// before.
func unchanged(tb testing.TB, what string, d *Device, p *Peer, before peerState, idx map[uint32]*keypair) {
	tb.Helper()
	if after := stateOf(p); after != before {
		tb.Errorf("%s changed the peer's state:\n before %+v\n after  %+v", what, before, after)
	}
	if after := indexOf(d, p); !maps.Equal(after, idx) {
		tb.Errorf("%s changed the peer's indices: before %v, after %v", what, idx, after)
	}
}

// cookieReply returns w's cookie reply (as a peer under load sends) to
// msg, carrying cookie encrypted with the mac1 of bound (msg itself, for
// a genuine reply), with nonce (random if nil).
func (w *wirePeer) cookieReply(msg, bound []byte, cookie [16]byte, nonce []byte) []byte {
	reply := make([]byte, sizeCookie)
	reply[0] = typeCookie
	copy(reply[4:8], msg[4:8])
	if nonce == nil {
		rand.Read(reply[8:32])
	} else {
		copy(reply[8:32], nonce)
	}
	key := labelHash("cookie--", w.key.PublicKey())
	a, _ := chacha20poly1305.NewX(key[:])
	a.Seal(reply[32:32], reply[8:32], cookie[:], bound[len(bound)-32:len(bound)-16])
	return reply
}
