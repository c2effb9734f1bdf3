// Command rawtls is the raw TLS-over-TCP peer of the HTTP/2 tunnel: one
// TCP connection with Go's crypto/tls (TLS 1.3), bulk data from sender to
// receiver, with no framing above TLS.
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
		fmt.Fprintln(os.Stderr, "usage: rawtls recv -listen ADDR | send -addr ADDR -d DUR")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	listen := fs.String("listen", "", "TCP address to receive on")
	addr := fs.String("addr", "", "receiver's address")
	d := fs.Duration("d", 10*time.Second, "how long to send")
	_ = fs.Parse(os.Args[2:])
	var err error
	switch os.Args[1] {
	case "recv":
		err = recv(*listen)
	case "send":
		err = send(*addr, *d)
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "rawtls:", err)
		os.Exit(1)
	}
}

func recv(listen string) error {
	ln, err := tls.Listen("tcp", listen, &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{selfSigned()}})
	if err != nil {
		return err
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			if _, err := rawbulk.Receive(c.(*tls.Conn)); err != nil {
				fmt.Fprintln(os.Stderr, "rawtls:", err)
			}
		}()
	}
}

func send(addr string, d time.Duration) error {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr,
		&tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true})
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
