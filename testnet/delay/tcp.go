package delay

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// TCP relays TCP connections with a delay. Each accepted connection gets
// its own connection to the target; bytes, half-close (FIN) and resets are
// forwarded each way after Delay.
type TCP struct {
	ln     net.Listener
	target string
	opts   Options
	done   chan struct{}
	wg     sync.WaitGroup
	st     stats

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// ListenTCP starts a relay listening on listen ("ip:port", port 0 picks
// one) that forwards to target ("ip:port"). Close it when done.
func ListenTCP(listen, target string, opts Options) (*TCP, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if _, err := checkAddr("listen address", listen, false); err != nil {
		return nil, err
	}
	if _, err := checkAddr("target", target, true); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("delay: listen tcp %s: %w", listen, err)
	}
	r := &TCP{ln: ln, target: target, opts: opts, done: make(chan struct{}), conns: make(map[net.Conn]struct{})}
	r.wg.Go(r.accept)
	return r, nil
}

// Addr is the address the relay listens on.
func (r *TCP) Addr() net.Addr { return r.ln.Addr() }

// Stats returns the relay's counters so far.
func (r *TCP) Stats() Stats { return r.st.snapshot() }

// Close stops the relay: the listener and every relayed connection are
// closed and its goroutines have ended when Close returns.
func (r *TCP) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	close(r.done)
	err := r.ln.Close()
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
	return err
}

// track registers c to be closed by Close; it reports false (and closes c)
// if the relay is closed already.
func (r *TCP) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		c.Close()
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *TCP) untrack(c net.Conn) {
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
	c.Close()
}

func (r *TCP) accept() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			select {
			case <-r.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // EMFILE and the like
			continue
		}
		if !r.track(c) {
			return
		}
		r.wg.Go(func() { r.serve(c) })
	}
}

// serve relays one connection: a reader and a delayed writer per direction.
func (r *TCP) serve(c net.Conn) {
	defer r.untrack(c)
	d := net.Dialer{Timeout: 5 * time.Second}
	up, err := d.Dial("tcp", r.target)
	if err != nil {
		resetConn(c)
		return
	}
	if !r.track(up) {
		return
	}
	defer r.untrack(up)
	toTarget, toClient := newLine(r.opts, &r.st), newLine(r.opts, &r.st)
	var wg sync.WaitGroup
	wg.Go(func() { r.read(c, toTarget) })
	wg.Go(func() { r.read(up, toClient) })
	wg.Go(func() { r.write(toTarget, up, c) })
	wg.Go(func() { r.write(toClient, c, up) })
	wg.Wait()
}

// read queues what from sends on l, then its FIN or reset, and closes l.
func (r *TCP) read(from net.Conn, l *line) {
	defer close(l.q)
	for {
		bp := tcpPool.Get().(*[]byte)
		n, err := from.Read(*bp)
		if n > 0 {
			if !l.push(chunk{bp: bp, n: n}, r.done) {
				tcpPool.Put(bp)
				return
			}
		} else {
			tcpPool.Put(bp)
		}
		if err != nil {
			kind := uint8(kindReset)
			if errors.Is(err, io.EOF) {
				kind = kindFIN
			}
			l.push(chunk{kind: kind}, r.done)
			return
		}
	}
}

// write writes the chunks of l to to when due. After a failed write both
// connections are reset and the rest of l is discarded.
func (r *TCP) write(l *line, to, from net.Conn) {
	failed := false
	l.run(r.done, func(c chunk) {
		switch c.kind {
		case kindData:
			if !failed {
				if _, err := to.Write((*c.bp)[:c.n]); err != nil {
					failed = true
					resetConn(to)
					resetConn(from)
				} else {
					r.st.forwarded.Add(1)
					r.st.bytes.Add(uint64(c.n))
				}
			}
			tcpPool.Put(c.bp)
		case kindFIN:
			if !failed {
				if cw, ok := to.(interface{ CloseWrite() error }); ok {
					_ = cw.CloseWrite()
				}
			}
		case kindReset:
			failed = true
			resetConn(to)
		}
	})
}
