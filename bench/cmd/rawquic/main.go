// Command rawquic is the raw quic-go peer of the QUIC tunnel, with the
// tunnel's flow-control windows and UDP socket buffers
// (l4proxy/tunnel.quicConfig and Config defaults: stream window 512 KiB
// growing to 16 MiB, connection window 1 MiB growing to 32 MiB, 8 MiB
// SO_RCVBUFFORCE/SO_SNDBUFFORCE) and TLS 1.3. It runs in two shapes:
//
// As a relay, the shape of the tunnel: "relay" accepts TCP connections and
// carries each on its own stream of one QUIC connection dialed at start;
// "recv -to" dials a TCP connection per stream and copies both ways
// (rawbulk.Relay, 256 KiB buffers, half-close propagated). iperf3 measures
// it from the user's node as it measures the tunnel.
//
//	rawquic recv -listen 198.18.20.2:4433 -to 198.18.30.2:5201
//	rawquic relay -listen 198.18.10.1:5201 -addr 198.18.20.2:4433
//
// Endpoint to endpoint (no TCP legs): one stream, bulk data from sender to
// receiver.
//
//	rawquic recv -listen 198.18.20.2:4433
//	rawquic send -addr 198.18.20.2:4433 -d 10s     # prints the receiver's JSON report
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/sys/unix"

	"github.com/onramp-net/onramp/bench/internal/rawbulk"
)

const alpn = "onramp-bench-raw"

func config() *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout:           10 * time.Second,
		MaxIdleTimeout:                 20 * time.Second,
		KeepAlivePeriod:                5 * time.Second,
		InitialStreamReceiveWindow:     512 << 10,
		MaxStreamReceiveWindow:         16 << 20,
		InitialConnectionReceiveWindow: 1 << 20,
		MaxConnectionReceiveWindow:     32 << 20,
		MaxIncomingStreams:             100,
		MaxIncomingUniStreams:          -1,
	}
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: rawquic recv -listen ADDR [-to TCPADDR] | send -addr ADDR -d DUR | relay -listen TCPADDR -addr ADDR")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	listen := fs.String("listen", "", "UDP address to receive on (recv), TCP address to accept on (relay)")
	addr := fs.String("addr", "", "receiver's address")
	to := fs.String("to", "", "recv: relay each stream to a new TCP connection to this address")
	d := fs.Duration("d", 10*time.Second, "how long to send")
	_ = fs.Parse(os.Args[2:])
	var err error
	switch os.Args[1] {
	case "recv":
		err = recv(*listen, *to)
	case "send":
		err = send(*addr, *d)
	case "relay":
		err = relay(*listen, *addr)
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "rawquic:", err)
		os.Exit(1)
	}
}

func udpSocket(laddr string) (*net.UDPConn, error) {
	ua, err := net.ResolveUDPAddr("udp", laddr)
	if err != nil {
		return nil, err
	}
	c, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, err
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	_ = rc.Control(func(fd uintptr) {
		const size = 8 << 20
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size) != nil {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, size)
		}
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, size) != nil {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, size)
		}
	})
	return c, nil
}

type stream struct{ *quic.Stream }

func (s stream) CloseWrite() error { return s.Stream.Close() }

func recv(listen, to string) error {
	udp, err := udpSocket(listen)
	if err != nil {
		return err
	}
	tr := &quic.Transport{Conn: udp}
	ln, err := tr.Listen(&tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{selfSigned()}, NextProtos: []string{alpn}}, config())
	if err != nil {
		return err
	}
	for {
		qc, err := ln.Accept(context.Background())
		if err != nil {
			return err
		}
		if to != "" {
			go relayStreams(qc, to)
			continue
		}
		go func() {
			defer qc.CloseWithError(0, "")
			s, err := qc.AcceptStream(context.Background())
			if err != nil {
				fmt.Fprintln(os.Stderr, "rawquic: accept stream:", err)
				return
			}
			if _, err := rawbulk.Receive(stream{s}); err != nil {
				fmt.Fprintln(os.Stderr, "rawquic:", err)
				return
			}
			// Let the report reach the sender before closing.
			select {
			case <-qc.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}()
	}
}

// relayStreams relays every stream of qc to a new TCP connection to to.
func relayStreams(qc *quic.Conn, to string) {
	defer qc.CloseWithError(0, "")
	for {
		s, err := qc.AcceptStream(context.Background())
		if err != nil {
			return
		}
		go func() {
			c, err := net.DialTimeout("tcp", to, 10*time.Second)
			if err != nil {
				fmt.Fprintln(os.Stderr, "rawquic:", err)
				s.CancelRead(1)
				s.CancelWrite(1)
				return
			}
			rawbulk.Relay(c.(*net.TCPConn), stream{s}, func() error { s.CancelRead(0); return s.Close() })
		}()
	}
}

// relay carries every TCP connection accepted on listen over its own
// stream of one QUIC connection to addr.
func relay(listen, addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	qc, err := dial(ctx, addr)
	cancel()
	if err != nil {
		return err
	}
	defer qc.CloseWithError(0, "")
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	return rawbulk.ServeTCP(ln, func(c *net.TCPConn) {
		s, err := qc.OpenStreamSync(context.Background())
		if err != nil {
			fmt.Fprintln(os.Stderr, "rawquic:", err)
			c.Close()
			return
		}
		rawbulk.Relay(c, stream{s}, func() error { s.CancelRead(0); return s.Close() })
	})
}

func dial(ctx context.Context, addr string) (*quic.Conn, error) {
	udp, err := udpSocket(":0")
	if err != nil {
		return nil, err
	}
	tr := &quic.Transport{Conn: udp}
	ra, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	return tr.Dial(ctx, ra, &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, NextProtos: []string{alpn}}, config())
}

func send(addr string, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	qc, err := dial(ctx, addr)
	if err != nil {
		return err
	}
	defer qc.CloseWithError(0, "")
	s, err := qc.OpenStreamSync(ctx)
	if err != nil {
		return err
	}
	rep, err := rawbulk.Send(stream{s}, d)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(rep)
}

func selfSigned() tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(24 * time.Hour), DNSNames: []string{"bench.test"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
