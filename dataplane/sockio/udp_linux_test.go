package sockio

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"
	"unsafe"

	"github.com/quic-go/quic-go"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

func rawUDP(t testing.TB, network, addr string) *UDPConn {
	t.Helper()
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(mustAddrPort(t, addr)))
	if err != nil {
		t.Skipf("%s %s: %v", network, addr, err)
	}
	t.Cleanup(func() { c.Close() })
	u, ok := NewUDP(c).(*UDPConn)
	if !ok {
		t.Fatal("NewUDP did not wrap a UDP socket")
	}
	return u
}

func mustAddrPort(t testing.TB, s string) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

func messages(n, size int) []ipv4.Message {
	ms := make([]ipv4.Message, n)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, size)}
		ms[i].OOB = make([]byte, 128)
	}
	return ms
}

// readAll reads batches until want datagrams came (or the deadline).
func readAll(t *testing.T, u *UDPConn, want int) ([][]byte, []net.Addr) {
	t.Helper()
	u.SetReadDeadline(time.Now().Add(5 * time.Second))
	ms := messages(8, 2048)
	var got [][]byte
	var from []net.Addr
	for len(got) < want {
		n, err := u.ReadBatch(ms, 0)
		if err != nil {
			t.Fatalf("ReadBatch after %d datagrams: %v", len(got), err)
		}
		for _, m := range ms[:n] {
			got = append(got, append([]byte(nil), m.Buffers[0][:m.N]...))
			from = append(from, m.Addr)
		}
	}
	return got, from
}

// TestUDPBatch: datagrams of several sizes from a plain socket arrive
// whole through ReadBatch, with their source address, over IPv4, IPv6 and
// an IPv6 socket that IPv4 reaches (a mapped address); WriteMsgUDP
// answers each source.
func TestUDPBatch(t *testing.T) {
	for _, tc := range []struct{ name, network, listen, client, clientNet string }{
		{"ipv4", "udp4", "127.0.0.1:0", "127.0.0.1", "udp4"},
		{"ipv6", "udp6", "[::1]:0", "::1", "udp6"},
		{"dual-stack", "udp", "[::]:0", "127.0.0.1", "udp4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := rawUDP(t, tc.network, tc.listen)
			port := u.LocalAddr().(*net.UDPAddr).Port
			c, err := net.DialUDP(tc.clientNet, nil, &net.UDPAddr{IP: net.ParseIP(tc.client), Port: port})
			if err != nil {
				t.Skip(err)
			}
			defer c.Close()
			var sent [][]byte
			for i, size := range []int{1, 100, 1200, 1452, 7, 2000} {
				b := bytes.Repeat([]byte{byte('a' + i)}, size)
				if _, err := c.Write(b); err != nil {
					t.Fatal(err)
				}
				sent = append(sent, b)
			}
			got, from := readAll(t, u, len(sent))
			me := c.LocalAddr().(*net.UDPAddr)
			for i := range sent {
				if !bytes.Equal(got[i], sent[i]) {
					t.Errorf("datagram %d: %d bytes %q..., want %d", i, len(got[i]), got[i][:min(4, len(got[i]))], len(sent[i]))
				}
				a, ok := from[i].(*net.UDPAddr)
				if !ok || !a.IP.Equal(me.IP) || a.Port != me.Port {
					t.Fatalf("datagram %d from %v, want %v", i, from[i], me)
				}
			}
			// The answer goes back to the address the datagrams came from.
			if _, _, err := u.WriteMsgUDP([]byte("answer"), nil, from[0].(*net.UDPAddr)); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 64)
			n, err := c.Read(buf)
			if err != nil || string(buf[:n]) != "answer" {
				t.Fatalf("answer: %q, %v", buf[:n], err)
			}
		})
	}
}

// TestUDPControlMessages: control messages pass both ways: the TOS byte a
// datagram carried (IP_RECVTOS, as quic-go asks for ECN) arrives in OOB,
// and a UDP_SEGMENT message (GSO, as quic-go sends trains) splits one
// write into datagrams of that size.
func TestUDPControlMessages(t *testing.T) {
	u := rawUDP(t, "udp4", "127.0.0.1:0")
	if err := u.rc.Control(func(fd uintptr) {
		if err := unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_RECVTOS, 1); err != nil {
			t.Error(err)
		}
	}); err != nil {
		t.Fatal(err)
	}
	c := rawUDP(t, "udp4", "127.0.0.1:0")
	dst := u.LocalAddr().(*net.UDPAddr)
	tos := []byte{0}
	oob := make([]byte, unix.CmsgSpace(1))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level, h.Type = unix.IPPROTO_IP, unix.IP_TOS
	h.SetLen(unix.CmsgLen(1))
	tos[0] = 2 // ECT(0)
	copy(oob[unix.CmsgLen(0):], tos)
	if _, _, err := c.WriteMsgUDP([]byte("ecn"), oob, dst); err != nil {
		t.Fatal(err)
	}
	u.SetReadDeadline(time.Now().Add(5 * time.Second))
	ms := messages(4, 2048)
	n, err := u.ReadBatch(ms, 0)
	if err != nil || n != 1 {
		t.Fatalf("ReadBatch: %d, %v", n, err)
	}
	cms, err := unix.ParseSocketControlMessage(ms[0].OOB[:ms[0].NN])
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, m := range cms {
		if m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_TOS && len(m.Data) > 0 {
			found = m.Data[0]&3 == 2
		}
	}
	if !found {
		t.Errorf("the TOS byte did not arrive in OOB (%d bytes of control messages)", ms[0].NN)
	}

	// GSO: 3 x 1000 bytes in one sendmsg.
	gso := make([]byte, unix.CmsgSpace(2))
	g := (*unix.Cmsghdr)(unsafe.Pointer(&gso[0]))
	g.Level, g.Type = unix.IPPROTO_UDP, unix.UDP_SEGMENT
	g.SetLen(unix.CmsgLen(2))
	*(*uint16)(unsafe.Pointer(&gso[unix.CmsgLen(0)])) = 1000
	train := append(append(bytes.Repeat([]byte{1}, 1000), bytes.Repeat([]byte{2}, 1000)...), bytes.Repeat([]byte{3}, 1000)...)
	if _, _, err := c.WriteMsgUDP(train, gso, dst); err != nil {
		var se *os.SyscallError
		if errors.As(err, &se) && (errors.Is(err, unix.EIO) || errors.Is(err, unix.EINVAL)) {
			t.Skipf("no UDP GSO here: %v", err)
		}
		t.Fatal(err)
	}
	got, _ := readAll(t, u, 3)
	for i, d := range got {
		if len(d) != 1000 || d[0] != byte(i+1) {
			t.Errorf("segment %d: %d bytes of %d, want 1000 of %d", i, len(d), d[0], i+1)
		}
	}
}

// TestUDPErrors: the read deadline and a Close under a waiting ReadBatch
// come back as *net.UDPConn's reads return them.
func TestUDPErrors(t *testing.T) {
	u := rawUDP(t, "udp4", "127.0.0.1:0")
	u.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := u.ReadBatch(messages(2, 100), 0)
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("ReadBatch past the deadline: %v, want a timeout", err)
	}
	u.SetReadDeadline(time.Time{})
	errc := make(chan error, 1)
	go func() { _, err := u.ReadBatch(messages(2, 100), 0); errc <- err }()
	time.Sleep(20 * time.Millisecond)
	u.Close()
	if err := <-errc; !errors.Is(err, net.ErrClosed) {
		t.Errorf("ReadBatch of a closed socket: %v, want net.ErrClosed", err)
	}
	if _, _, err := u.WriteMsgUDP([]byte("x"), nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}); !errors.Is(err, net.ErrClosed) {
		t.Errorf("WriteMsgUDP on a closed socket: %v, want net.ErrClosed", err)
	}
	v4 := rawUDP(t, "udp4", "127.0.0.1:0")
	if _, _, err := v4.WriteMsgUDP([]byte("x"), nil, &net.UDPAddr{IP: net.ParseIP("::1"), Port: 9}); err == nil {
		t.Error("an IPv6 destination on an IPv4 socket was accepted")
	}
}

// TestUDPNoAllocations: a batch read from a known source and a write
// allocate nothing.
func TestUDPNoAllocations(t *testing.T) {
	u := rawUDP(t, "udp4", "127.0.0.1:0")
	c := rawUDP(t, "udp4", "127.0.0.1:0")
	dst := u.LocalAddr().(*net.UDPAddr)
	ms := messages(8, 2048)
	msg := make([]byte, 1200)
	round := func() {
		if _, _, err := c.WriteMsgUDP(msg, nil, dst); err != nil {
			t.Fatal(err)
		}
		if n, err := u.ReadBatch(ms, 0); err != nil || n != 1 {
			t.Fatalf("ReadBatch: %d, %v", n, err)
		}
	}
	round() // the source's address is made once
	if a := testing.AllocsPerRun(500, round); a != 0 {
		t.Errorf("%v allocations per write and batch read, want 0", a)
	}
}

// TestQUICOverUDPConn runs quic-go over two UDPConns, as the tunnel does:
// a client opens streams and sends 8 MiB on each to a server that hashes
// them and answers with the sum.
func TestQUICOverUDPConn(t *testing.T) {
	for _, network := range []string{"udp4", "udp6"} {
		t.Run(network, func(t *testing.T) {
			listen := "127.0.0.1:0"
			if network == "udp6" {
				listen = "[::1]:0"
			}
			su, cu := rawUDP(t, network, listen), rawUDP(t, network, listen)
			str, ctr := &quic.Transport{Conn: su}, &quic.Transport{Conn: cu}
			defer str.Close()
			defer ctr.Close()
			ln, err := str.Listen(serverTLS(t), &quic.Config{})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			go func() {
				conn, err := ln.Accept(ctx)
				if err != nil {
					return
				}
				for {
					st, err := conn.AcceptStream(ctx)
					if err != nil {
						return
					}
					go func() {
						h := sha256.New()
						io.Copy(h, st)
						st.Write(h.Sum(nil))
						st.Close()
					}()
				}
			}()
			conn, err := ctr.Dial(ctx, su.LocalAddr(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"sockio-test"}}, &quic.Config{})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.CloseWithError(0, "")
			errc := make(chan error, 3)
			for s := range 3 {
				go func() {
					st, err := conn.OpenStreamSync(ctx)
					if err != nil {
						errc <- err
						return
					}
					h := sha256.New()
					buf := bytes.Repeat([]byte{byte(s)}, 64<<10)
					for range 128 {
						st.Write(buf)
						h.Write(buf)
					}
					st.Close()
					sum, err := io.ReadAll(st)
					if err == nil && !bytes.Equal(sum, h.Sum(nil)) {
						err = fmt.Errorf("stream %d: the server's sum differs", s)
					}
					errc <- err
				}()
			}
			for range 3 {
				if err := <-errc; err != nil {
					t.Fatal(err)
				}
			}
			// ReadBatch holds its lock while it waits: stop quic-go's
			// reader first.
			conn.CloseWithError(0, "")
			str.Close()
			su.rd.mu.Lock()
			read := su.rd.addrs[0] != nil
			su.rd.mu.Unlock()
			if !read {
				t.Error("quic-go did not read through the UDPConn's ReadBatch")
			}
		})
	}
}

func serverTLS(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, NextProtos: []string{"sockio-test"}}
}
