package wg

import (
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"hash"
	"time"

	"golang.org/x/crypto/blake2s"
	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/curve25519"

	"github.com/onramp-net/onramp/l3router/l3config"
)

// The WireGuard protocol (Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s, as in the
// WireGuard paper, section 5, and wireguard.com/protocol), with no preshared
// key: onramp's configurations carry none.

// Message types and sizes.
const (
	typeInitiation = 1
	typeResponse   = 2
	typeCookie     = 3
	typeTransport  = 4

	sizeInitiation   = 148
	sizeResponse     = 92
	sizeCookie       = 64
	sizeTransportHdr = 16 // type, receiver index, counter
	sizeTag          = chacha20poly1305.Overhead
	// MinTransport is the size of a keepalive: header and tag.
	sizeKeepalive = sizeTransportHdr + sizeTag
)

// Protocol constants (the paper's section 6.1).
const (
	rekeyAfterMessages  = 1 << 60
	rejectAfterMessages = ^uint64(0) - (1 << 13)
	cookieRefreshTime   = 120 * time.Second
	// A peer may start at most this many handshakes a second.
	initiationMinGap = time.Second / 50
)

// The protocol's timers; variables only so that tests can run sessions
// through their whole life in seconds.
var (
	rekeyAfterTime   = 120 * time.Second
	rejectAfterTime  = 180 * time.Second
	rekeyAttemptTime = 90 * time.Second
	rekeyTimeout     = 5 * time.Second
	keepaliveTimeout = 10 * time.Second
)

var (
	errShort    = errors.New("wrong message size")
	errDecrypt  = errors.New("authentication failed")
	errUnknown  = errors.New("unknown peer key")
	errReplay   = errors.New("replayed or old timestamp")
	errFlood    = errors.New("handshakes too frequent")
	errLowOrder = errors.New("low-order public key")
)

var (
	initialChainKey [blake2s.Size]byte // HASH(construction)
	initialHash     [blake2s.Size]byte // HASH(chain key || identifier)
	zeroNonce       [chacha20poly1305.NonceSize]byte
)

func init() {
	initialChainKey = blake2s.Sum256([]byte("Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"))
	initialHash = blake2s.Sum256(append(initialChainKey[:], "WireGuard v1 zx2c4 Jason@zx2c4.com"...))
}

func newBlake2s() hash.Hash {
	h, _ := blake2s.New256(nil)
	return h
}

func hmacSum(out *[blake2s.Size]byte, key []byte, in ...[]byte) {
	m := hmac.New(newBlake2s, key)
	for _, b := range in {
		m.Write(b)
	}
	m.Sum(out[:0])
}

// kdf is the HKDF of the protocol: it fills outs[0..n-1] from key and
// input.
func kdf(key, input []byte, outs ...*[blake2s.Size]byte) {
	var prk [blake2s.Size]byte
	hmacSum(&prk, key, input)
	var prev []byte
	for i, out := range outs {
		hmacSum(out, prk[:], prev, []byte{byte(i + 1)})
		prev = out[:]
	}
	clear(prk[:])
}

// mixHash sets h to HASH(h || data).
func mixHash(h *[blake2s.Size]byte, data []byte) {
	d := newBlake2s()
	d.Write(h[:])
	d.Write(data)
	d.Sum(h[:0])
}

// labelHash returns HASH(label || key), the mac1 and cookie keys.
func labelHash(label string, key l3config.Key) [blake2s.Size]byte {
	return blake2s.Sum256(append([]byte(label), key[:]...))
}

// dh is X25519, refusing a low-order point (an all-zero result).
func dh(priv l3config.Key, pub []byte) ([32]byte, error) {
	var out [32]byte
	r, err := curve25519.X25519(priv[:], pub)
	if err != nil {
		return out, errLowOrder
	}
	copy(out[:], r)
	return out, nil
}

func seal(key *[32]byte, dst, plain, ad []byte) {
	a, _ := chacha20poly1305.New(key[:])
	a.Seal(dst[:0], zeroNonce[:], plain, ad)
}

func open(key *[32]byte, dst, ct, ad []byte) error {
	a, _ := chacha20poly1305.New(key[:])
	if _, err := a.Open(dst[:0], zeroNonce[:], ct, ad); err != nil {
		return errDecrypt
	}
	return nil
}

// tai64n is the 12-byte TAI64N label of t. The nanoseconds are rounded
// down to a multiple of 2^24 (about 16.8 ms), so that the timestamp does
// not serve as an oracle of the clock.
func tai64n(t time.Time) [12]byte {
	var b [12]byte
	binary.BigEndian.PutUint64(b[:8], 0x400000000000000a+uint64(t.Unix()))
	binary.BigEndian.PutUint32(b[8:], uint32(t.Nanosecond())&^(1<<24-1))
	return b
}

func newEphemeral() (priv, pub l3config.Key, err error) {
	priv, err = l3config.GeneratePrivateKey()
	if err != nil {
		return
	}
	return priv, priv.PublicKey(), nil
}

// identity is this side's static key and what derives from it.
type identity struct {
	priv, pub l3config.Key
	mac1Key   [blake2s.Size]byte // HASH("mac1----" || pub): checks mac1 of messages to us
	cookieKey [blake2s.Size]byte // HASH("cookie--" || pub)
}

func newIdentity(priv l3config.Key) identity {
	pub := priv.PublicKey()
	return identity{priv: priv, pub: pub, mac1Key: labelHash("mac1----", pub), cookieKey: labelHash("cookie--", pub)}
}

// remote is what the handshake needs of a peer.
type remote struct {
	pub       l3config.Key
	ss        [32]byte           // DH(our static, its static)
	mac1Key   [blake2s.Size]byte // HASH("mac1----" || its key): mac1 of messages to it
	cookieKey [blake2s.Size]byte // HASH("cookie--" || its key): decrypts its cookie replies
}

func newRemote(id *identity, pub l3config.Key) (remote, error) {
	ss, err := dh(id.priv, pub[:])
	if err != nil {
		return remote{}, err
	}
	return remote{pub: pub, ss: ss, mac1Key: labelHash("mac1----", pub), cookieKey: labelHash("cookie--", pub)}, nil
}

// sessionKeys are the transport keys a handshake derives.
type sessionKeys struct {
	send, recv [32]byte
}

// handshake is the state of one handshake in progress.
type handshake struct {
	chainKey, hash [blake2s.Size]byte
	ephPriv        l3config.Key // ours, as initiator
	remoteEph      [32]byte     // theirs, as responder
	localIndex     uint32
	remoteIndex    uint32
}

// addMACs writes mac1 (keyed for the receiver) and mac2 (keyed by a
// cookie, zero without one) into the last 32 bytes of msg, and returns
// mac1.
func addMACs(msg []byte, mac1Key []byte, cookie *[16]byte) [16]byte {
	n := len(msg)
	mac(msg[n-32:n-16], mac1Key, msg[:n-32])
	if cookie != nil {
		mac(msg[n-16:], cookie[:], msg[:n-16])
	} else {
		clear(msg[n-16:])
	}
	var m1 [16]byte
	copy(m1[:], msg[n-32:n-16])
	return m1
}

// checkMAC1 reports whether msg's mac1 is keyed for id.
func (id *identity) checkMAC1(msg []byte) bool {
	n := len(msg)
	var want [16]byte
	mac(want[:], id.mac1Key[:], msg[:n-32])
	return subtle.ConstantTimeCompare(want[:], msg[n-32:n-16]) == 1
}

// createInitiation fills msg (sizeInitiation bytes) with a handshake
// initiation to r from localIndex and returns the handshake state.
func (id *identity) createInitiation(msg []byte, r *remote, localIndex uint32, now time.Time) (handshake, error) {
	hs := handshake{chainKey: initialChainKey, hash: initialHash, localIndex: localIndex}
	mixHash(&hs.hash, r.pub[:])
	priv, pub, err := newEphemeral()
	if err != nil {
		return hs, err
	}
	hs.ephPriv = priv
	clear(msg)
	binary.LittleEndian.PutUint32(msg[0:4], typeInitiation)
	binary.LittleEndian.PutUint32(msg[4:8], localIndex)
	copy(msg[8:40], pub[:])
	kdf(hs.chainKey[:], pub[:], &hs.chainKey)
	mixHash(&hs.hash, pub[:])
	es, err := dh(priv, r.pub[:])
	if err != nil {
		return hs, err
	}
	var k [32]byte
	kdf(hs.chainKey[:], es[:], &hs.chainKey, &k)
	seal(&k, msg[40:88], id.pub[:], hs.hash[:])
	mixHash(&hs.hash, msg[40:88])
	kdf(hs.chainKey[:], r.ss[:], &hs.chainKey, &k)
	ts := tai64n(now)
	seal(&k, msg[88:116], ts[:], hs.hash[:])
	mixHash(&hs.hash, msg[88:116])
	return hs, nil
}

// initiation is a consumed handshake initiation.
type initiation struct {
	hs        handshake
	static    l3config.Key // the initiator's key
	timestamp [12]byte
}

// consumeInitiation checks and decrypts a handshake initiation (mac1
// already checked).
func (id *identity) consumeInitiation(msg []byte, lookup func(l3config.Key) *remote) (initiation, *remote, error) {
	var in initiation
	if len(msg) != sizeInitiation {
		return in, nil, errShort
	}
	hs := &in.hs
	hs.chainKey, hs.hash = initialChainKey, initialHash
	mixHash(&hs.hash, id.pub[:])
	hs.remoteIndex = binary.LittleEndian.Uint32(msg[4:8])
	copy(hs.remoteEph[:], msg[8:40])
	kdf(hs.chainKey[:], hs.remoteEph[:], &hs.chainKey)
	mixHash(&hs.hash, hs.remoteEph[:])
	es, err := dh(id.priv, hs.remoteEph[:])
	if err != nil {
		return in, nil, err
	}
	var k [32]byte
	kdf(hs.chainKey[:], es[:], &hs.chainKey, &k)
	if err := open(&k, in.static[:], msg[40:88], hs.hash[:]); err != nil {
		return in, nil, err
	}
	mixHash(&hs.hash, msg[40:88])
	r := lookup(in.static)
	if r == nil {
		return in, nil, errUnknown
	}
	kdf(hs.chainKey[:], r.ss[:], &hs.chainKey, &k)
	if err := open(&k, in.timestamp[:], msg[88:116], hs.hash[:]); err != nil {
		return in, nil, err
	}
	mixHash(&hs.hash, msg[88:116])
	return in, r, nil
}

// createResponse fills msg (sizeResponse bytes) with the response to the
// consumed initiation hs, from localIndex, and returns the session keys.
func createResponse(msg []byte, hs *handshake, r *remote, localIndex uint32) (sessionKeys, error) {
	var keys sessionKeys
	priv, pub, err := newEphemeral()
	if err != nil {
		return keys, err
	}
	clear(msg)
	binary.LittleEndian.PutUint32(msg[0:4], typeResponse)
	binary.LittleEndian.PutUint32(msg[4:8], localIndex)
	binary.LittleEndian.PutUint32(msg[8:12], hs.remoteIndex)
	copy(msg[12:44], pub[:])
	kdf(hs.chainKey[:], pub[:], &hs.chainKey)
	mixHash(&hs.hash, pub[:])
	ee, err := dh(priv, hs.remoteEph[:])
	if err != nil {
		return keys, err
	}
	kdf(hs.chainKey[:], ee[:], &hs.chainKey)
	se, err := dh(priv, r.pub[:])
	if err != nil {
		return keys, err
	}
	kdf(hs.chainKey[:], se[:], &hs.chainKey)
	var tau, k, psk [32]byte
	kdf(hs.chainKey[:], psk[:], &hs.chainKey, &tau, &k)
	mixHash(&hs.hash, tau[:])
	seal(&k, msg[44:60], nil, hs.hash[:])
	mixHash(&hs.hash, msg[44:60])
	kdf(hs.chainKey[:], nil, &keys.recv, &keys.send)
	return keys, nil
}

// consumeResponse checks a handshake response to our initiation hs (mac1
// already checked) and returns the session keys and the responder's
// index.
func (id *identity) consumeResponse(msg []byte, hs *handshake, r *remote) (sessionKeys, uint32, error) {
	var keys sessionKeys
	if len(msg) != sizeResponse {
		return keys, 0, errShort
	}
	ck, h := hs.chainKey, hs.hash
	var eph [32]byte
	copy(eph[:], msg[12:44])
	kdf(ck[:], eph[:], &ck)
	mixHash(&h, eph[:])
	ee, err := dh(hs.ephPriv, eph[:])
	if err != nil {
		return keys, 0, err
	}
	kdf(ck[:], ee[:], &ck)
	se, err := dh(id.priv, eph[:])
	if err != nil {
		return keys, 0, err
	}
	kdf(ck[:], se[:], &ck)
	var tau, k, psk [32]byte
	kdf(ck[:], psk[:], &ck, &tau, &k)
	mixHash(&h, tau[:])
	if err := open(&k, nil, msg[44:60], h[:]); err != nil {
		return keys, 0, err
	}
	kdf(ck[:], nil, &keys.send, &keys.recv)
	return keys, binary.LittleEndian.Uint32(msg[4:8]), nil
}

// consumeCookie decrypts a cookie reply to a message of ours whose mac1
// was lastMAC1.
func consumeCookie(msg []byte, r *remote, lastMAC1 [16]byte) ([16]byte, error) {
	var cookie [16]byte
	if len(msg) != sizeCookie {
		return cookie, errShort
	}
	a, _ := chacha20poly1305.NewX(r.cookieKey[:])
	if _, err := a.Open(cookie[:0], msg[8:32], msg[32:64], lastMAC1[:]); err != nil {
		return cookie, errDecrypt
	}
	return cookie, nil
}

// newAEAD returns the transport cipher of key.
func newAEAD(key *[32]byte) cipher.AEAD {
	a, _ := chacha20poly1305.New(key[:])
	return a
}

// randomIndex returns a random 32-bit index.
func randomIndex() uint32 {
	var b [4]byte
	rand.Read(b[:])
	return binary.LittleEndian.Uint32(b[:])
}
