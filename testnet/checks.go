package testnet

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"
)

// The checks below are what a user does through the tunnel; the demo and
// the end-to-end tests share them. Each dials from inside node.

// HTTPGet sends GET path with Host host to the HTTP listener at addr and
// returns the status and body.
func (node *Node) HTTPGet(addr, host, path string) (int, string, error) {
	return node.HTTPGetFrom(netip.Addr{}, addr, host, path)
}

// Upload sends n bytes of [Pattern] to the sum origin behind addr,
// half-closes, and checks the origin's count and SHA-256 against what was
// sent. It returns the time from connect to the answer.
func (node *Node) Upload(addr string, n int64) (time.Duration, error) {
	start := time.Now()
	c, err := node.Dial("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	h := sha256.New()
	if err := writePattern(io.MultiWriter(c, h), n); err != nil {
		return 0, fmt.Errorf("upload: %w", err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return 0, err
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return 0, fmt.Errorf("upload: no answer after half-close: %w", err)
	}
	want := fmt.Sprintf("%d %s\n", n, hex.EncodeToString(h.Sum(nil)))
	if line != want {
		return 0, fmt.Errorf("upload: origin counted %q, sent %q", strings.TrimSpace(line), strings.TrimSpace(want))
	}
	return time.Since(start), nil
}

// Download asks the source origin behind addr for n bytes and checks them.
func (node *Node) Download(addr string, n int64) (time.Duration, error) {
	start := time.Now()
	c, err := node.Dial("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if _, err := fmt.Fprintf(c, "%d\n", n); err != nil {
		return 0, err
	}
	if err := CheckPattern(c, n); err != nil {
		return 0, fmt.Errorf("download: %w", err)
	}
	return time.Since(start), nil
}

// UDPEcho sends count datagrams to the UDP echo behind addr and expects each
// back, retrying a lost one a few times (UDP may drop).
func (node *Node) UDPEcho(addr string, count int) error {
	c, err := node.Dial("udp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 2048)
	for i := 0; i < count; i++ {
		msg := []byte(fmt.Sprintf("datagram %d to %s", i, addr))
		ok := false
		for try := 0; try < 10 && !ok; try++ {
			if _, err := c.Write(msg); err != nil {
				return err
			}
			_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			for {
				n, err := c.Read(buf)
				if err != nil {
					break // timeout: send again
				}
				if bytes.Equal(buf[:n], msg) {
					ok = true
					break
				}
			}
		}
		if !ok {
			return fmt.Errorf("udp echo: datagram %d never came back", i)
		}
	}
	return nil
}

// MBps formats a transfer rate.
func MBps(n int64, d time.Duration) string {
	return fmt.Sprintf("%.0f MB/s", float64(n)/d.Seconds()/1e6)
}
