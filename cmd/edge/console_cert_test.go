package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// writeKeyPair writes a self-signed certificate for 127.0.0.1 with the
// serial number serial, and its key, as PEM files.
func writeKeyPair(t *testing.T, certPath, keyPath string, serial int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "console"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestConsoleCertReload: a reload reads the console's certificate files
// again and serves a renewed certificate from the next handshake on, on
// the same listener; files that do not load fail the reload and the
// served certificate stays.
func TestConsoleCertReload(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "console.crt"), filepath.Join(dir, "console.key")
	writeKeyPair(t, certPath, keyPath, 1)
	e, base := consoleEdge(t, fmt.Sprintf("console: {tls_cert: %s, tls_key: %s}\n", certPath, keyPath))
	addr := strings.TrimPrefix(base, "http://")
	p := startLoggedEdge(t, e)

	// served is the serial number of the certificate a new handshake gets.
	served := func() (int64, error) {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			return 0, err
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64(), nil
	}
	waitServed := func(want int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			got, err := served()
			if err == nil && got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("serial %d (%v), want %d\n%s", got, err, want, p.log.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	reload := func(want string) {
		t.Helper()
		n := strings.Count(p.log.String(), want)
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for strings.Count(p.log.String(), want) == n {
			if time.Now().After(deadline) {
				t.Fatalf("no %q after SIGHUP:\n%s", want, p.log.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitServed(1)
	// A connection open across the renewal keeps its certificate.
	held, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()

	reload("console_cert=unchanged")
	writeKeyPair(t, certPath, keyPath, 2) // renewed, as certbot's deploy hook would leave it
	reload("console_cert=renewed")
	waitServed(2)
	if s := held.ConnectionState().PeerCertificates[0].SerialNumber.Int64(); s != 1 {
		t.Errorf("the connection open across the renewal shows serial %d", s)
	}

	// A half-written renewal: the reload fails, serial 2 stays.
	if err := os.WriteFile(certPath, []byte("-----BEGIN CERTIFICATE-----\ntruncated\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reload("edge config reload refused")
	if !strings.Contains(p.log.String(), "console TLS (console.tls_cert "+certPath) {
		t.Errorf("the refusal does not name the file:\n%s", p.log.String())
	}
	waitServed(2)
}
