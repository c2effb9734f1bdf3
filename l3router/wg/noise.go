package wg

import (
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"hash"
	"reflect"
	"runtime"
	"sync"
	"time"

	"golang.org/x/crypto/blake2s"
	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/curve25519"

	"github.com/onramp-net/onramp/l3router/l3config"
)

// The WireGuard protocol (Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s, as in the
// WireGuard paper, section 5, and wireguard.com/protocol), with no preshared
// key: onramp's configurations carry none.
//
// Key hygiene, as wireguard-go's Handshake.Clear and setZero: the state of a
// handshake (ephemeral private key, chain key, hash) is zeroed when the
// handshake completes, gives up or its peer is removed, and every DH result,
// KDF output and session key these functions hold in a variable of their own
// is zeroed before they return. A session's transport keys live inside its
// AEADs; those keys are zeroed once nothing refers to the session any more
// (wipeWhenUnreachable). What Go does not let a program reach stays: copies
// the compiler makes on the stack, and the scalars that crypto/ecdh (behind
// curve25519) and crypto/hmac copy into their own objects.

var (
	errShort    = errors.New("wrong message size")
	errDecrypt  = errors.New("authentication failed")
	errUnknown  = errors.New("unknown peer key")
	errReplay   = errors.New("replayed or old timestamp")
	errFlood    = errors.New("handshakes too frequent")
	errLowOrder = errors.New("low-order public key")
	errStray    = errors.New("response to no initiation in progress")
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

// dh sets out to X25519(priv, pub), refusing a low-order point (an
// all-zero result: the DH of a low-order or all-zero public key is known to
// anyone, as wireguard-go's sharedSecret refuses it); out is zero then.
func dh(out *[32]byte, priv *l3config.Key, pub []byte) error {
	r, err := curve25519.X25519(priv[:], pub)
	if err != nil {
		clear(out[:])
		return errLowOrder
	}
	copy(out[:], r)
	clear(r)
	return nil
}

// wipe zeroes keys.
func wipe(keys ...*[32]byte) {
	for _, k := range keys {
		clear(k[:])
	}
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

// identity is this side's static key and what derives from it.
type identity struct {
	priv, pub l3config.Key
	mac1Key   [blake2s.Size]byte // HASH("mac1----" || pub): checks mac1 of messages to us
	cookieKey [blake2s.Size]byte // HASH("cookie--" || pub)
	// mac1s holds BLAKE2s-128 hashes keyed by mac1Key (*keyedMAC), so
	// that checking a mac1, the first thing done to every handshake
	// message from anyone, allocates nothing.
	mac1s *sync.Pool
}

func newIdentity(priv l3config.Key) identity {
	pub := priv.PublicKey()
	id := identity{priv: priv, pub: pub, mac1Key: labelHash("mac1----", pub), cookieKey: labelHash("cookie--", pub)}
	key := id.mac1Key
	id.mac1s = &sync.Pool{New: func() any {
		h, _ := blake2s.New128(key[:])
		return &keyedMAC{h: h}
	}}
	return id
}

// keyedMAC is a keyed BLAKE2s-128 hash and room for its sum.
type keyedMAC struct {
	h   hash.Hash
	sum [16]byte
}

// remote is what the handshake needs of a peer.
type remote struct {
	pub     l3config.Key
	ss      [32]byte           // DH(our static, its static); zeroed when the peer is removed
	mac1Key [blake2s.Size]byte // HASH("mac1----" || its key): mac1 of messages to it
	// cookieAEAD is XChaCha20Poly1305 keyed by HASH("cookie--" || its
	// key): it decrypts the peer's cookie replies.
	cookieAEAD cipher.AEAD
}

func newRemote(id *identity, pub l3config.Key) (remote, error) {
	r := remote{pub: pub, mac1Key: labelHash("mac1----", pub)}
	if err := dh(&r.ss, &id.priv, pub[:]); err != nil {
		return remote{}, err
	}
	ck := labelHash("cookie--", pub)
	r.cookieAEAD, _ = chacha20poly1305.NewX(ck[:])
	return r, nil
}

// sessionKeys are the transport keys a handshake derives.
type sessionKeys struct {
	send, recv [32]byte
}

// aeads returns the transport ciphers of the keys and zeroes the keys.
func (k *sessionKeys) aeads() (send, recv cipher.AEAD) {
	send, recv = newAEAD(&k.send), newAEAD(&k.recv)
	wipe(&k.send, &k.recv)
	return send, recv
}

// handshake is the state of a handshake: the one this side initiated (a
// Peer's, from its initiation to the response or the give-up) or the one
// it answers (for the length of one call).
type handshake struct {
	chainKey, hash [blake2s.Size]byte
	ephPriv        l3config.Key // ours: set before createInitiation or createResponse
	remoteEph      [32]byte     // theirs, as responder
	localIndex     uint32
	remoteIndex    uint32
}

// clear zeroes the handshake, as wireguard-go's Handshake.Clear does.
func (hs *handshake) clear() { *hs = handshake{} }

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

// checkMAC1 reports whether msg's mac1 is keyed for id. It allocates
// nothing.
func (id *identity) checkMAC1(msg []byte) bool {
	n := len(msg)
	m := id.mac1s.Get().(*keyedMAC)
	m.h.Reset()
	m.h.Write(msg[:n-32])
	m.h.Sum(m.sum[:0])
	ok := subtle.ConstantTimeCompare(m.sum[:], msg[n-32:n-16]) == 1
	id.mac1s.Put(m)
	return ok
}

// createInitiation fills msg (sizeInitiation bytes) with a handshake
// initiation to r from localIndex, with the ephemeral key hs.ephPriv, and
// leaves the handshake's state in hs. On error hs is zeroed.
func (id *identity) createInitiation(hs *handshake, msg []byte, r *remote, localIndex uint32, now time.Time) error {
	hs.chainKey, hs.hash = initialChainKey, initialHash
	hs.localIndex, hs.remoteIndex, hs.remoteEph = localIndex, 0, [32]byte{}
	mixHash(&hs.hash, r.pub[:])
	pub := hs.ephPriv.PublicKey()
	clear(msg)
	binary.LittleEndian.PutUint32(msg[0:4], typeInitiation)
	binary.LittleEndian.PutUint32(msg[4:8], localIndex)
	copy(msg[8:40], pub[:])
	kdf(hs.chainKey[:], pub[:], &hs.chainKey)
	mixHash(&hs.hash, pub[:])
	var es, k [32]byte
	defer wipe(&es, &k)
	if err := dh(&es, &hs.ephPriv, r.pub[:]); err != nil {
		hs.clear()
		return err
	}
	kdf(hs.chainKey[:], es[:], &hs.chainKey, &k)
	seal(&k, msg[40:88], id.pub[:], hs.hash[:])
	mixHash(&hs.hash, msg[40:88])
	kdf(hs.chainKey[:], r.ss[:], &hs.chainKey, &k)
	ts := tai64n(now)
	seal(&k, msg[88:116], ts[:], hs.hash[:])
	mixHash(&hs.hash, msg[88:116])
	return nil
}

// initiation is a consumed handshake initiation.
type initiation struct {
	hs        handshake
	static    l3config.Key // the initiator's key
	timestamp [12]byte
}

// consumeInitiation checks and decrypts a handshake initiation (mac1
// already checked) into in. lookup returns the remote of the initiator's
// key, nil if it is not a peer's. On error in is zeroed.
func (id *identity) consumeInitiation(in *initiation, msg []byte, lookup func(l3config.Key) *remote) (*remote, error) {
	*in = initiation{}
	if len(msg) != sizeInitiation {
		return nil, errShort
	}
	hs := &in.hs
	hs.chainKey, hs.hash = initialChainKey, initialHash
	mixHash(&hs.hash, id.pub[:])
	hs.remoteIndex = binary.LittleEndian.Uint32(msg[4:8])
	copy(hs.remoteEph[:], msg[8:40])
	kdf(hs.chainKey[:], hs.remoteEph[:], &hs.chainKey)
	mixHash(&hs.hash, hs.remoteEph[:])
	var es, k [32]byte
	defer wipe(&es, &k)
	r, err := func() (*remote, error) {
		if err := dh(&es, &id.priv, hs.remoteEph[:]); err != nil {
			return nil, err
		}
		kdf(hs.chainKey[:], es[:], &hs.chainKey, &k)
		if err := open(&k, in.static[:], msg[40:88], hs.hash[:]); err != nil {
			return nil, err
		}
		mixHash(&hs.hash, msg[40:88])
		r := lookup(in.static)
		if r == nil {
			return nil, errUnknown
		}
		kdf(hs.chainKey[:], r.ss[:], &hs.chainKey, &k)
		if err := open(&k, in.timestamp[:], msg[88:116], hs.hash[:]); err != nil {
			return r, err
		}
		mixHash(&hs.hash, msg[88:116])
		return r, nil
	}()
	if err != nil {
		*in = initiation{}
	}
	return r, err
}

// createResponse fills msg (sizeResponse bytes) with the response to the
// consumed initiation hs, from localIndex, with the ephemeral key
// hs.ephPriv, and derives the session keys into keys. It zeroes hs: the
// handshake ends here for the responder.
func createResponse(msg []byte, hs *handshake, r *remote, localIndex uint32, keys *sessionKeys) error {
	defer hs.clear()
	var ee, se, tau, k, psk [32]byte
	defer wipe(&ee, &se, &tau, &k)
	priv := &hs.ephPriv
	pub := priv.PublicKey()
	clear(msg)
	binary.LittleEndian.PutUint32(msg[0:4], typeResponse)
	binary.LittleEndian.PutUint32(msg[4:8], localIndex)
	binary.LittleEndian.PutUint32(msg[8:12], hs.remoteIndex)
	copy(msg[12:44], pub[:])
	kdf(hs.chainKey[:], pub[:], &hs.chainKey)
	mixHash(&hs.hash, pub[:])
	if err := dh(&ee, priv, hs.remoteEph[:]); err != nil {
		return err
	}
	kdf(hs.chainKey[:], ee[:], &hs.chainKey)
	if err := dh(&se, priv, r.pub[:]); err != nil {
		return err
	}
	kdf(hs.chainKey[:], se[:], &hs.chainKey)
	kdf(hs.chainKey[:], psk[:], &hs.chainKey, &tau, &k)
	mixHash(&hs.hash, tau[:])
	seal(&k, msg[44:60], nil, hs.hash[:])
	mixHash(&hs.hash, msg[44:60])
	kdf(hs.chainKey[:], nil, &keys.recv, &keys.send)
	return nil
}

// consumeResponse checks a handshake response to our initiation hs (mac1
// already checked), derives the session keys into keys and returns the
// responder's index. It leaves hs as it was: a response that fails must
// not end the handshake; the caller clears hs once it completes.
func (id *identity) consumeResponse(msg []byte, hs *handshake, r *remote, keys *sessionKeys) (uint32, error) {
	if len(msg) != sizeResponse {
		return 0, errShort
	}
	ck, h := hs.chainKey, hs.hash
	var ee, se, tau, k, psk [32]byte
	defer wipe(&ck, &h, &ee, &se, &tau, &k)
	eph := msg[12:44]
	kdf(ck[:], eph, &ck)
	mixHash(&h, eph)
	if err := dh(&ee, &hs.ephPriv, eph); err != nil {
		return 0, err
	}
	kdf(ck[:], ee[:], &ck)
	if err := dh(&se, &id.priv, eph); err != nil {
		return 0, err
	}
	kdf(ck[:], se[:], &ck)
	kdf(ck[:], psk[:], &ck, &tau, &k)
	mixHash(&h, tau[:])
	if err := open(&k, nil, msg[44:60], h[:]); err != nil {
		return 0, err
	}
	kdf(ck[:], nil, &keys.send, &keys.recv)
	return binary.LittleEndian.Uint32(msg[4:8]), nil
}

// consumeCookie decrypts, in place, a cookie reply to a message of ours
// whose mac1 was lastMAC1, and returns the cookie. It allocates nothing.
func consumeCookie(msg []byte, r *remote, lastMAC1 *[16]byte) ([16]byte, error) {
	var cookie [16]byte
	if len(msg) != sizeCookie {
		return cookie, errShort
	}
	pt, err := r.cookieAEAD.Open(msg[32:32], msg[8:32], msg[32:64], lastMAC1[:])
	if err != nil {
		return cookie, errDecrypt
	}
	copy(cookie[:], pt)
	clear(pt)
	return cookie, nil
}

// newAEAD returns the transport cipher of key.
func newAEAD(key *[32]byte) cipher.AEAD {
	a, _ := chacha20poly1305.New(key[:])
	return a
}

// aeadKey returns the key inside a ChaCha20-Poly1305 AEAD of
// golang.org/x/crypto (a struct holding nothing but the key), or nil if
// the AEAD is not that (the package changed its layout): then the key
// cannot be zeroed.
func aeadKey(a cipher.AEAD) *[32]byte {
	v := reflect.ValueOf(a)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return nil
	}
	t := v.Type().Elem()
	if t.PkgPath() != "golang.org/x/crypto/chacha20poly1305" || t.Kind() != reflect.Struct ||
		t.NumField() != 1 || t.Field(0).Type != reflect.TypeFor[[32]byte]() {
		return nil
	}
	return (*[32]byte)(v.UnsafePointer())
}

// wipeWhenUnreachable zeroes the keys inside aeads once owner (a session)
// is unreachable. Zeroing them when the session is dropped would race with
// a loop still sealing or opening a packet with it (and a packet sealed
// with a half-zeroed key is all but plaintext); once the session is
// unreachable nobody can be. The users of a session's AEAD keep the
// session alive while they use it (runtime.KeepAlive).
func wipeWhenUnreachable[T any](owner *T, aeads ...cipher.AEAD) {
	var keys []*[32]byte
	for _, a := range aeads {
		if k := aeadKey(a); k != nil {
			keys = append(keys, k)
		}
	}
	if len(keys) > 0 {
		runtime.AddCleanup(owner, func(keys []*[32]byte) {
			for _, k := range keys {
				clear(k[:])
			}
		}, keys)
	}
}

// randomIndex returns a random 32-bit index.
func randomIndex() uint32 {
	var b [4]byte
	rand.Read(b[:])
	return binary.LittleEndian.Uint32(b[:])
}
