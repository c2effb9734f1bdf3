package sockio

import (
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// An idle connection should cost what its sockets cost. Waiting for a
// socket on Go's poller takes a goroutine, whose stack (4 to 8 KiB) is
// most of what an idle proxied connection costs. A Poller waits for many
// sockets without one: a socket with nothing to read is parked in the
// Poller's epoll set, one-shot, and the goroutine that read it ends; when
// the socket becomes readable (data, EOF or an error) the Poller starts
// a goroutine for it again.
//
// The set's own descriptor waits on Go's poller (an epoll descriptor is
// readable while it has events), so no thread blocks in epoll_wait and a
// wake-up costs what a socket's does.

// Parked states.
const (
	stateRunning int32 = iota
	stateParked
	stateDone
)

// A Poller is an epoll set of parked sockets and the goroutine that wakes
// them.
type Poller struct {
	epfd   int
	file   *os.File // epfd, registered with Go's poller
	rc     syscall.RawConn
	mu     sync.Mutex
	parked map[uint64]*Parker // by token
	next   uint64
	n      atomic.Int64 // parked now

	events []unix.EpollEvent // of the last wait (loop only)
	got    int
	wait   func(fd uintptr) bool
}

// NewPoller makes a Poller and starts its goroutine, which runs until
// Close.
func NewPoller() (*Poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, err
	}
	p := &Poller{epfd: epfd, parked: make(map[uint64]*Parker), events: make([]unix.EpollEvent, 256)}
	p.file = os.NewFile(uintptr(epfd), "sockio-epoll")
	if p.rc, err = p.file.SyscallConn(); err != nil {
		p.file.Close()
		return nil, err
	}
	p.wait = p.poll
	go p.loop()
	return p, nil
}

var (
	sharedOnce   sync.Once
	sharedPoller *Poller
)

// SharedPoller is the process's Poller, made at first use; nil if epoll
// is not available.
func SharedPoller() *Poller {
	sharedOnce.Do(func() {
		sharedPoller, _ = NewPoller()
	})
	return sharedPoller
}

// Close stops the Poller. Parked sockets stay parked: their owners must
// end them (Unpark).
func (p *Poller) Close() error { return p.file.Close() }

// Parked is how many sockets are parked now.
func (p *Poller) Parked() int64 { return p.n.Load() }

// poll takes the events ready now; false (wait on Go's poller) if none.
func (p *Poller) poll(fd uintptr) bool {
	n, err := epollWaitNow(int(fd), p.events)
	if err != nil && err != unix.EINTR {
		p.got = 0
		return true
	}
	p.got = n
	return n > 0
}

func (p *Poller) loop() {
	for {
		if err := p.rc.Read(p.wait); err != nil {
			return // closed
		}
		for i := range p.got {
			tok := uint64(uint32(p.events[i].Fd)) | uint64(uint32(p.events[i].Pad))<<32
			p.mu.Lock()
			k := p.parked[tok]
			delete(p.parked, tok)
			p.mu.Unlock()
			if k != nil && k.state.CompareAndSwap(stateParked, stateRunning) {
				p.n.Add(-1)
				go k.wake()
			}
		}
	}
}

// A Parker parks one socket in a Poller, again and again: each Park waits
// for the socket to become readable without a goroutine, then runs wake
// in a new goroutine. Its owner runs (reads the socket) between a wake
// and the next Park; whoever takes it back with Unpark owns it then.
type Parker struct {
	p     *Poller
	rc    syscall.RawConn
	wake  func()
	token uint64
	state atomic.Int32

	// mu orders the parks: once parked, the Poller may start the next
	// wake, which may park again before the previous Park has read its
	// result.
	mu    sync.Mutex
	armed bool             // added to the epoll set once
	ctl   func(fd uintptr) // arm, made once
	op    int
	err   error
}

// NewParker returns a Parker of the socket rc for p, which runs wake in a
// new goroutine each time the socket becomes readable after a Park.
func (p *Poller) NewParker(rc syscall.RawConn, wake func()) *Parker {
	p.mu.Lock()
	p.next++
	k := &Parker{p: p, rc: rc, wake: wake, token: p.next}
	p.mu.Unlock()
	k.ctl = k.arm
	return k
}

// Park waits for the socket to become readable (data, EOF or an error)
// without a goroutine; the caller must not touch what wake will own
// after it. It returns an error (and the caller still owns the socket)
// if the socket cannot be parked: it was closed, for one.
func (k *Parker) Park() error {
	p := k.p
	k.mu.Lock()
	k.state.Store(stateParked)
	p.n.Add(1)
	p.mu.Lock()
	p.parked[k.token] = k
	p.mu.Unlock()
	k.op = unix.EPOLL_CTL_MOD
	if !k.armed {
		k.op = unix.EPOLL_CTL_ADD
	}
	k.err = nil
	err := k.rc.Control(k.ctl)
	if err == nil {
		err = k.err
	}
	if err == nil {
		k.armed = true
	}
	k.mu.Unlock()
	if err != nil {
		if k.Unpark() {
			return err
		}
		// Taken by another Unpark meanwhile: it owns the socket now.
		return nil
	}
	return nil
}

// Unpark takes the socket back if it is parked: true means the caller
// owns it now (no wake will run for this Park) and must end or run it.
func (k *Parker) Unpark() bool {
	if !k.state.CompareAndSwap(stateParked, stateRunning) {
		return false
	}
	k.p.n.Add(-1)
	k.p.mu.Lock()
	delete(k.p.parked, k.token)
	k.p.mu.Unlock()
	return true
}

// arm adds or re-arms the socket fd in the epoll set, one-shot.
func (k *Parker) arm(fd uintptr) {
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT,
		Fd: int32(uint32(k.token)), Pad: int32(uint32(k.token >> 32))}
	k.err = epollCtl(k.p.epfd, k.op, int(fd), &ev)
}

// epollWaitNow and epollCtl are epoll_wait with no timeout and epoll_ctl
// as raw system calls: they never wait, and the runtime's bookkeeping of
// a blocking call costs more than they do (see the package comment).
func epollWaitNow(epfd int, events []unix.EpollEvent) (int, error) {
	n, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])),
		uintptr(len(events)), 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

func epollCtl(epfd, op, fd int, ev *unix.EpollEvent) error {
	_, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	if errno != 0 {
		return os.NewSyscallError("epoll_ctl", errno)
	}
	return nil
}
