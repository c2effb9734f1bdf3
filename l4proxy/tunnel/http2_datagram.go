package tunnel

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// h2Datagrams carries datagrams on the "/datagrams" stream, each framed as len u16 | datagram.
// Both queues are bounded: the send queue makes SendDatagram wait up to
// Config.DatagramSendWait, the receive queue drops when full.
type h2Datagrams struct {
	ctx     context.Context
	sendq   chan *[]byte // framed
	recvq   chan *[]byte // datagram only
	wait    time.Duration
	dropped atomic.Uint64
	// fail is called when the datagram stream breaks while the connection is
	// up; the connection is then shut down, as it cannot carry UDP flows any more.
	fail func(error)
}

func newH2Datagrams(ctx context.Context, cfg *Config) *h2Datagrams {
	return &h2Datagrams{
		ctx:   ctx,
		sendq: make(chan *[]byte, cfg.DatagramQueueLen),
		recvq: make(chan *[]byte, cfg.DatagramQueueLen),
		wait:  cfg.DatagramSendWait,
	}
}

var dgPool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

func getDG(n int) *[]byte {
	bp := dgPool.Get().(*[]byte)
	if cap(*bp) < n {
		*bp = make([]byte, n)
	}
	*bp = (*bp)[:n]
	return bp
}

func putDG(bp *[]byte) {
	*bp = (*bp)[:0]
	dgPool.Put(bp)
}

func (d *h2Datagrams) broken(err error) {
	if d.ctx.Err() == nil && d.fail != nil {
		d.fail(fmt.Errorf("datagram stream: %w", err))
	}
}

func (d *h2Datagrams) send(b []byte) error {
	if len(b) > MaxDatagramLen {
		return fmt.Errorf("send datagram: %d bytes: %w", len(b), ErrDatagramTooLarge)
	}
	if d.ctx.Err() != nil {
		return fmt.Errorf("send datagram: %w", connGoneErr(d.ctx))
	}
	bp := getDG(2 + len(b))
	binary.BigEndian.PutUint16(*bp, uint16(len(b)))
	copy((*bp)[2:], b)
	select {
	case d.sendq <- bp:
		return nil
	default:
	}
	t := time.NewTimer(d.wait)
	defer t.Stop()
	select {
	case d.sendq <- bp:
		return nil
	case <-t.C:
		putDG(bp)
		d.dropped.Add(1)
		return fmt.Errorf("send datagram: %w", ErrDatagramDropped)
	case <-d.ctx.Done():
		putDG(bp)
		return fmt.Errorf("send datagram: %w", connGoneErr(d.ctx))
	}
}

func (d *h2Datagrams) receive(ctx context.Context, b []byte) (int, error) {
	select {
	case bp := <-d.recvq:
		n := copy(b, *bp)
		short := n < len(*bp)
		putDG(bp)
		if short {
			return n, io.ErrShortBuffer
		}
		return n, nil
	case <-ctx.Done():
		return 0, fmt.Errorf("receive datagram: %w", ctx.Err())
	case <-d.ctx.Done():
		return 0, fmt.Errorf("receive datagram: %w", connGoneErr(d.ctx))
	}
}

// writeLoop sends queued datagrams on w, flushing after each batch, until the
// connection ends or a write fails.
func (d *h2Datagrams) writeLoop(w io.Writer, flush func() error) {
	if c, ok := w.(io.Closer); ok {
		defer c.Close()
	}
	for {
		select {
		case bp := <-d.sendq:
			for {
				_, err := w.Write(*bp)
				putDG(bp)
				if err != nil {
					d.broken(err)
					return
				}
				select {
				case bp = <-d.sendq:
					continue
				default:
				}
				break
			}
			if flush != nil {
				if err := flush(); err != nil {
					d.broken(err)
					return
				}
			}
		case <-d.ctx.Done():
			return
		}
	}
}

// readLoop receives datagrams from r into the bounded receive queue until r fails.
func (d *h2Datagrams) readLoop(r io.Reader) {
	var h [2]byte
	for {
		if _, err := io.ReadFull(r, h[:]); err != nil {
			d.broken(err)
			return
		}
		bp := getDG(int(binary.BigEndian.Uint16(h[:])))
		if _, err := io.ReadFull(r, *bp); err != nil {
			putDG(bp)
			d.broken(err)
			return
		}
		select {
		case d.recvq <- bp:
		default:
			putDG(bp)
			d.dropped.Add(1)
		}
	}
}
