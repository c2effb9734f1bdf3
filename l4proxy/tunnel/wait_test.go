package tunnel

import (
	"context"
	"errors"
	"io"
	"os"
	"testing"
	"time"
)

// TestQUICStreamWaitReadable: a QUIC stream's WaitReadable (what the
// proxy's quiet wait uses) waits on the edge for the response, which the
// connector sends with its first bytes, then waits until data comes and
// consumes none of it, returns
// on EOF, and a read deadline in the past wakes a wait with
// os.ErrDeadlineExceeded; once cleared, the data is read.
func TestQUICStreamWaitReadable(t *testing.T) {
	for _, addr := range loopbacks(t) {
		t.Run(addr, func(t *testing.T) {
			p := newPair(t, transports[0], addr)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s, err := p.edge.OpenStream(ctx, testReq)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			w := s.(interface {
				WaitReadable() error
				SetReadDeadline(time.Time) error
			})
			// Before the response: it waits for it, and the connector's
			// OK comes with its first bytes.
			first := make(chan error, 1)
			go func() { first <- w.WaitReadable() }()
			cs, _, err := p.connector.AcceptStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := cs.Respond(StatusOK, ""); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-first:
				t.Fatalf("WaitReadable returned %v after an OK and no data: the OK left alone", err)
			case <-time.After(50 * time.Millisecond):
			}
			cs.Write([]byte("a"))
			if err := <-first; err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 16)
			if n, err := s.Read(buf); n != 1 || err != nil {
				t.Fatalf("read %d, %v", n, err)
			}

			waited := make(chan error, 1)
			go func() { waited <- w.WaitReadable() }()
			select {
			case err := <-waited:
				t.Fatalf("WaitReadable returned %v with nothing to read", err)
			case <-time.After(50 * time.Millisecond):
			}
			cs.Write([]byte("bc"))
			if err := <-waited; err != nil {
				t.Fatal(err)
			}
			if err := w.WaitReadable(); err != nil { // consumed nothing: at once
				t.Fatal(err)
			}
			if n, err := io.ReadFull(s, buf[:2]); n != 2 || err != nil || string(buf[:2]) != "bc" {
				t.Fatalf("read %q, %v", buf[:n], err)
			}

			go func() { waited <- w.WaitReadable() }()
			time.Sleep(20 * time.Millisecond)
			w.SetReadDeadline(time.Now())
			if err := <-waited; !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("woken by a past deadline: %v, want os.ErrDeadlineExceeded", err)
			}
			cs.Write([]byte("d"))
			w.SetReadDeadline(time.Time{})
			if n, err := s.Read(buf); n != 1 || err != nil || buf[0] != 'd' {
				t.Fatalf("after the deadline was cleared: read %q, %v", buf[:n], err)
			}

			cs.CloseWrite()
			if err := w.WaitReadable(); err != nil {
				t.Fatalf("at EOF: %v", err)
			}
			if _, err := s.Read(buf); err != io.EOF {
				t.Fatalf("read at EOF: %v", err)
			}
		})
	}
}
