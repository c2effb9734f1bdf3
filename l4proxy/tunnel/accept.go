package tunnel

import (
	"context"
	"fmt"
	"net"
	"sync"
)

// acceptQueue hands connections that finished their handshake and
// authentication to [Listener.Accept]; both listeners embed one.
type acceptQueue struct {
	conns chan Conn
	ctx   context.Context // done once the listener closes
	stop  context.CancelFunc
	once  sync.Once
}

func newAcceptQueue() acceptQueue {
	ctx, stop := context.WithCancel(context.Background())
	return acceptQueue{conns: make(chan Conn), ctx: ctx, stop: stop}
}

// Accept returns the next authenticated connection.
func (q *acceptQueue) Accept(ctx context.Context) (Conn, error) {
	select {
	case c := <-q.conns:
		return c, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-q.ctx.Done():
		return nil, fmt.Errorf("accept: %w", net.ErrClosed)
	}
}

// offer waits for Accept to take c; it reports false, leaving c to the
// caller to close, if the listener closed first.
func (q *acceptQueue) offer(c Conn) bool {
	select {
	case q.conns <- c:
		return true
	case <-q.ctx.Done():
		return false
	}
}

// close stops the queue once, running f (the listener's own closing) once.
func (q *acceptQueue) close(f func()) {
	q.once.Do(func() {
		q.stop()
		f()
	})
}
