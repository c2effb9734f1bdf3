// Command rawtls is the raw TLS-over-TCP peer of the HTTP/2 tunnel: Go's
// crypto/tls (TLS 1.3) over TCP with no framing above TLS. It runs in two
// shapes:
//
// As a relay, the shape of the tunnel: "relay" accepts TCP connections and
// carries each over its own TLS connection; "recv -to" dials a TCP
// connection per TLS connection and copies both ways (rawbulk.Relay,
// 256 KiB buffers, half-close propagated). iperf3 measures it from the
// user's node as it measures the tunnel.
//
//	rawtls recv -listen 198.18.20.2:4433 -to 198.18.30.2:5201
//	rawtls relay -listen 198.18.10.1:5201 -addr 198.18.20.2:4433
//
// Endpoint to endpoint (no TCP legs): one connection, bulk data from sender
// to receiver.
//
//	rawtls recv -listen 198.18.20.2:4433
//	rawtls send -addr 198.18.20.2:4433 -d 10s     # prints the receiver's JSON report
package main

import (
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

	"github.com/onramp-net/onramp/bench/internal/rawbulk"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: rawtls recv -listen ADDR [-to TCPADDR] | send -addr ADDR -d DUR | relay -listen TCPADDR -addr ADDR")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	listen := fs.String("listen", "", "TCP address to receive on (recv) or to accept plain TCP on (relay)")
	addr := fs.String("addr", "", "receiver's address")
	to := fs.String("to", "", "recv: relay each connection to a new TCP connection to this address")
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
		fmt.Fprintln(os.Stderr, "rawtls:", err)
		os.Exit(1)
	}
}

func recv(listen, to string) error {
	ln, err := tls.Listen("tcp", listen, &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{selfSigned()}})
	if err != nil {
		return err
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		if to != "" {
			go relayTo(c.(*tls.Conn), to)
			continue
		}
		go func() {
			defer c.Close()
			if _, err := rawbulk.Receive(c.(*tls.Conn)); err != nil {
				fmt.Fprintln(os.Stderr, "rawtls:", err)
			}
		}()
	}
}

// relayTo relays tc to a new TCP connection to to.
func relayTo(tc *tls.Conn, to string) {
	c, err := net.DialTimeout("tcp", to, 10*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rawtls:", err)
		tc.Close()
		return
	}
	rawbulk.Relay(c.(*net.TCPConn), tc, tc.Close)
}

// relay carries every TCP connection accepted on listen over its own TLS
// connection to addr.
func relay(listen, addr string) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	return rawbulk.ServeTCP(ln, func(c *net.TCPConn) {
		tc, err := dial(addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "rawtls:", err)
			c.Close()
			return
		}
		rawbulk.Relay(c, tc, tc.Close)
	})
}

func dial(addr string) (*tls.Conn, error) {
	return tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr,
		&tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true})
}

func send(addr string, d time.Duration) error {
	c, err := dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	rep, err := rawbulk.Send(c, d)
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
