package testnet

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Origin ports of [ServeOrigins], on every address of the node (IPv4 and IPv6).
const (
	OriginEcho   = 7    // TCP and UDP echo
	OriginSum    = 9    // TCP: reads to EOF, answers "<bytes> <sha256 hex>\n", closes
	OriginSource = 19   // TCP: reads a decimal count and "\n", sends that many bytes of [Pattern], closes
	OriginSlow   = 13   // TCP: a slow reader, 16 KiB every 50 ms (320 KB/s), for backpressure tests
	OriginHTTP   = 8080 // HTTP: "/" greets with the client's address, "/bytes?n=N" sends N bytes of Pattern
	OriginHTTPS  = 8443 // the same over TLS, with a certificate for *.demo.test signed by Origins.CAPEM
)

// Pattern fills a buffer with the deterministic bytes the source origin
// sends, continuing at offset off, so both ends can check a transfer.
func Pattern(b []byte, off int64) {
	for i := range b {
		x := uint64(off + int64(i))
		b[i] = byte(x*2654435761>>13) ^ byte(x>>8)
	}
}

// Origins are the private services of the testbed, served from Go inside a
// node's namespace.
type Origins struct {
	// CAPEM is the certificate (self-signed) of the HTTPS origin: a client
	// that trusts only it proves it talked TLS end to end with the origin.
	CAPEM []byte

	closers []io.Closer
	wg      sync.WaitGroup
}

// Close stops every origin.
func (o *Origins) Close() error {
	for _, c := range o.closers {
		_ = c.Close()
	}
	o.wg.Wait()
	return nil
}

// ServeOrigins starts the origins of the testbed inside node: TCP and UDP
// echo, the sum and source services and an HTTP server. They are stopped
// when the Net closes, or by Close.
func (node *Node) ServeOrigins() (*Origins, error) {
	o := &Origins{}
	err := node.Do(func() error {
		for _, svc := range []struct {
			port  int
			serve func(net.Conn)
		}{{OriginEcho, echoConn}, {OriginSum, sumConn}, {OriginSource, sourceConn}, {OriginSlow, slowConn}} {
			ln, err := net.Listen("tcp", fmt.Sprintf("[::]:%d", svc.port))
			if err != nil {
				return err
			}
			o.closers = append(o.closers, ln)
			o.wg.Add(1)
			go func() {
				defer o.wg.Done()
				serveConns(ln, svc.serve)
			}()
		}
		pc, err := net.ListenPacket("udp", fmt.Sprintf("[::]:%d", OriginEcho))
		if err != nil {
			return err
		}
		o.closers = append(o.closers, pc)
		o.wg.Add(1)
		go func() {
			defer o.wg.Done()
			buf := make([]byte, 65536)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				_, _ = pc.WriteTo(buf[:n], from)
			}
		}()
		ln, err := net.Listen("tcp", fmt.Sprintf("[::]:%d", OriginHTTP))
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: originHTTP(node.Name), ReadHeaderTimeout: 10 * time.Second}
		o.closers = append(o.closers, srv)
		o.wg.Add(1)
		go func() {
			defer o.wg.Done()
			_ = srv.Serve(ln)
		}()
		cert, certPEM, err := selfSigned("secure.demo.test", "*.demo.test")
		if err != nil {
			return err
		}
		o.CAPEM = certPEM
		tln, err := net.Listen("tcp", fmt.Sprintf("[::]:%d", OriginHTTPS))
		if err != nil {
			return err
		}
		tsrv := &http.Server{Handler: originHTTP(node.Name + " over TLS"), ReadHeaderTimeout: 10 * time.Second,
			TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
		o.closers = append(o.closers, tsrv)
		o.wg.Add(1)
		go func() {
			defer o.wg.Done()
			_ = tsrv.ServeTLS(tln, "", "")
		}()
		return nil
	})
	if err != nil {
		o.Close()
		return nil, fmt.Errorf("testnet: origins in %s: %w", node.Name, err)
	}
	if node.net != nil {
		node.net.OnClose(o.Close)
	}
	return o, nil
}

func serveConns(ln net.Listener, serve func(net.Conn)) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			serve(c)
		}()
	}
}

func echoConn(c net.Conn) { _, _ = io.Copy(c, c) }

func sumConn(c net.Conn) {
	h := sha256.New()
	n, err := io.Copy(h, c)
	if err != nil {
		return
	}
	fmt.Fprintf(c, "%d %s\n", n, hex.EncodeToString(h.Sum(nil)))
}

func slowConn(c net.Conn) {
	buf := make([]byte, 16*1024)
	for {
		if _, err := io.ReadFull(c, buf); err != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func sourceConn(c net.Conn) {
	line, err := bufio.NewReader(io.LimitReader(c, 32)).ReadString('\n')
	if err != nil {
		return
	}
	n, err := strconv.ParseInt(strings.TrimSpace(line), 10, 64)
	if err != nil || n < 0 {
		return
	}
	_ = writePattern(c, n)
}

func writePattern(w io.Writer, n int64) error {
	buf := make([]byte, 256*1024)
	for off := int64(0); off < n; {
		chunk := buf
		if rem := n - off; rem < int64(len(chunk)) {
			chunk = chunk[:rem]
		}
		Pattern(chunk, off)
		if _, err := w.Write(chunk); err != nil {
			return err
		}
		off += int64(len(chunk))
	}
	return nil
}

func originHTTP(name string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s: %s %s host=%s from=%s\n", name, r.Method, r.URL.Path, r.Host, r.RemoteAddr)
	})
	mux.HandleFunc("/bytes", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		if err != nil || n < 0 {
			http.Error(w, "want /bytes?n=COUNT", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		_ = writePattern(w, n)
	})
	return mux
}

// selfSigned makes a self-signed ECDSA certificate for names.
func selfSigned(names ...string) (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: names[0]},
		DNSNames:              names,
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, certPEM, nil
}

// CheckPattern reads r to EOF and reports whether it is exactly n bytes of
// [Pattern].
func CheckPattern(r io.Reader, n int64) error {
	buf := make([]byte, 256*1024)
	want := make([]byte, len(buf))
	var off int64
	for {
		k, err := r.Read(buf)
		if k > 0 {
			Pattern(want[:k], off)
			for i := 0; i < k; i++ {
				if buf[i] != want[i] {
					return fmt.Errorf("byte %d differs", off+int64(i))
				}
			}
			off += int64(k)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("after %d bytes: %w", off, err)
		}
	}
	if off != n {
		return fmt.Errorf("got %d bytes, want %d", off, n)
	}
	return nil
}
