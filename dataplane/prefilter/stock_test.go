package prefilter

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"math/big"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// TestClassifyQUICStock holds Classify to real traffic: a quic-go client
// and server (4-byte connection IDs, the edge's) talk through a relay on
// loopback, which classifies every datagram the client sends to the
// server, the way the pre-filter sees them at the server's port, while
// the client opens streams and sends 8 MiB. Every datagram must pass.
func TestClassifyQUICStock(t *testing.T) {
	const connIDLen = 4
	server, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	str := &quic.Transport{Conn: server, ConnectionIDLength: connIDLen}
	defer str.Close()
	ln, err := str.Listen(&tls.Config{Certificates: []tls.Certificate{testCert(t)}, NextProtos: []string{"t"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	received := make(chan int64, 1)
	go func() {
		c, err := ln.Accept(ctx)
		if err != nil {
			received <- -1
			return
		}
		var n int64
		for {
			s, err := c.AcceptStream(ctx)
			if err != nil {
				received <- n
				return
			}
			m, _ := io.Copy(io.Discard, s)
			n += m
		}
	}()

	relay, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	var mu sync.Mutex
	verdicts := map[Reason]int{}
	var bad [][]byte
	var client netip.AddrPort
	go func() {
		buf := make([]byte, 65536)
		to := server.LocalAddr().(*net.UDPAddr).AddrPort()
		for {
			n, from, err := relay.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if from == to {
				mu.Lock()
				c := client
				mu.Unlock()
				relay.WriteToUDPAddrPort(buf[:n], c)
				continue
			}
			r := Classify(buf[:n], QUIC, connIDLen)
			mu.Lock()
			client = from
			verdicts[r]++
			if r.Drop() {
				bad = append(bad, append([]byte(nil), buf[:n]...))
			}
			mu.Unlock()
			relay.WriteToUDPAddrPort(buf[:n], to)
		}
	}()

	cudp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ctr := &quic.Transport{Conn: cudp, ConnectionIDLength: connIDLen}
	defer ctr.Close()
	c, err := ctr.Dial(ctx, relay.LocalAddr(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"t"}}, &quic.Config{EnableDatagrams: true})
	if err != nil {
		t.Fatal(err)
	}
	const total = 8 << 20
	chunk := make([]byte, 64<<10)
	for sent := 0; sent < total; {
		s, err := c.OpenStreamSync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 16 && sent < total; i++ {
			if _, err := s.Write(chunk); err != nil {
				t.Fatal(err)
			}
			sent += len(chunk)
		}
		s.Close()
	}
	time.Sleep(200 * time.Millisecond)
	c.CloseWithError(0, "")
	if n := <-received; n != total {
		t.Errorf("the server received %d bytes, want %d", n, total)
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("the client's datagrams by verdict: %v", verdicts)
	if len(bad) > 0 {
		t.Fatalf("%d of quic-go's datagrams would be dropped, the first (%d bytes): %v", len(bad), len(bad[0]), Classify(bad[0], QUIC, connIDLen))
	}
	if verdicts[PassQUIC] < 100 {
		t.Fatalf("only %d datagrams passed: the relay saw too little", verdicts[PassQUIC])
	}
}

func testCert(t *testing.T) tls.Certificate {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
}
