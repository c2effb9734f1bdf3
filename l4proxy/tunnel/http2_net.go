package tunnel

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"time"
)

// watchConn cancels the connection's context when the TLS connection fails or is
// closed, so that Conn.Context reports a dead HTTP/2 connection.
type watchConn struct {
	net.Conn
	tc     *tls.Conn
	cancel context.CancelCauseFunc
}

func (w *watchConn) Read(p []byte) (int, error) {
	n, err := w.Conn.Read(p)
	if err != nil {
		w.cancel(fmt.Errorf("connection read: %w", err))
	}
	return n, err
}

func (w *watchConn) Write(p []byte) (int, error) {
	n, err := w.Conn.Write(p)
	if err != nil {
		w.cancel(fmt.Errorf("connection write: %w", err))
	}
	return n, err
}

func (w *watchConn) Close() error {
	w.cancel(ErrClosed)
	return w.Conn.Close()
}

// ConnectionState lets x/net/http2 see the TLS state through the wrapper.
func (w *watchConn) ConnectionState() tls.ConnectionState { return w.tc.ConnectionState() }

// setTCPOptions enables TCP keep-alives at the tunnel's keep-alive period and disables Nagle.
func setTCPOptions(c net.Conn, period time.Duration) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	_ = tc.SetNoDelay(true)
	_ = tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: period, Interval: period, Count: 3})
}

// flushWriter flushes an HTTP/2 response after every write (control messages).
type flushWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func (f *flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err != nil {
		return n, err
	}
	return n, f.rc.Flush()
}

func newDiscardLogger() *log.Logger { return log.New(io.Discard, "", 0) }
