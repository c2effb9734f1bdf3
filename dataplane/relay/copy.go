package relay

import (
	"io"
	"net"
	"sync"
	"time"
)

// Copy buffers: a direction reads into a small pooled buffer while little
// arrives at a time and a big one once a read fills the small one (a bulk
// transfer); while its socket has nothing to read it holds none.
const (
	smallBufSize = 4 << 10
	bigBufSize   = 256 << 10
)

var (
	smallPool = sync.Pool{New: func() any { b := make([]byte, smallBufSize); return &b }}
	bigPool   = sync.Pool{New: func() any { b := make([]byte, bigBufSize); return &b }}
)

func getBuf(big bool) *[]byte {
	if big {
		return bigPool.Get().(*[]byte)
	}
	return smallPool.Get().(*[]byte)
}

func putBuf(bp *[]byte) {
	if len(*bp) == bigBufSize {
		bigPool.Put(bp)
	} else {
		smallPool.Put(bp)
	}
}

// copyLoop copies from src to dst through pooled buffers until EOF
// (eof=true) or an error. It does not allocate per read.
func (r *run) copyLoop(dst, src net.Conn, c Counter) (n int64, err error, eof bool) {
	var w *ReadWaiter
	if rc := rawConn(src); rc != nil {
		w = NewReadWaiter(rc)
	}
	var bp *[]byte
	defer func() {
		if bp != nil {
			putBuf(bp)
		}
	}()
	big := false
	for {
		if bp == nil {
			if w != nil {
				// An error (closed, reset) comes again from the Read.
				_ = w.Wait()
			}
			bp = getBuf(big)
		}
		buf := *bp
		nr, rerr := src.Read(buf)
		if nr > 0 {
			r.last.Store(time.Now().UnixNano())
			nw, werr := dst.Write(buf[:nr])
			n += int64(nw)
			add(c, nw)
			if werr != nil {
				return n, werr, false
			}
		}
		if rerr != nil {
			if rerr == io.EOF {
				return n, nil, true
			}
			return n, rerr, false
		}
		switch {
		case !big && nr == len(buf):
			big = true
			putBuf(bp)
			bp = nil
		case big && nr < smallBufSize:
			big = false
			putBuf(bp)
			bp = nil
		case w != nil && nr < len(buf):
			// Drained: wait for more without a buffer.
			putBuf(bp)
			bp = nil
		}
	}
}
