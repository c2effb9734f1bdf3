package bench

import (
	"fmt"
	"math"
	"runtime"
	"sync"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/sys/unix"
)

// A machine probe measures how fast the SUT CPU is while a run goes on:
// once a second, on a thread pinned to it, it seals 1 MiB with
// ChaCha20-Poly1305 (work that stays in the cache) and copies 16 MiB
// (work that goes to memory), each timed in the thread's own CPU time:
// about 2 ms a second, so the run hardly notices. A machine that slows
// down (the host's other tenants, a lower clock) shows as fewer MB per
// CPU second while the code under test is the same. On this project's
// benchmark machine the memory copy swings between 10 and 16 GB/s in
// phases of tens of seconds with nothing else running, and the QUIC
// relays' slow runs are the slow phases.

// ProbeResult is what a probe saw during one run: the medians of its
// samples in MB (of 2^20 bytes) per CPU second; NaN without a sample.
type ProbeResult struct {
	Seal, Copy float64
}

func (r ProbeResult) String() string {
	if math.IsNaN(r.Copy) {
		return "no sample"
	}
	return fmt.Sprintf("sealed %.0f MB per CPU-s (ChaCha20-Poly1305, in cache), copied %.0f (memory)", r.Seal, r.Copy)
}

// probeMemory is the probe's copy buffer, made once per process.
var probeMemory = sync.OnceValue(func() []byte {
	b := make([]byte, 64<<20)
	for i := range b {
		b[i] = byte(i)
	}
	return b
})

type machineProbe struct {
	stop chan struct{}
	done chan ProbeResult
}

// startProbe starts a probe pinned to cpus (a taskset list; "" leaves
// the thread where it is). Only one may run at a time.
func startProbe(cpus string) *machineProbe {
	p := &machineProbe{stop: make(chan struct{}), done: make(chan ProbeResult, 1)}
	big := probeMemory()
	go func() {
		var seal, cp []float64
		defer func() { p.done <- ProbeResult{Seal: Summarize(seal).Median, Copy: Summarize(cp).Median} }()
		// The thread is given back as it was: were it to end (a locked
		// goroutine returning), the children the harness started from
		// it would get their parent-death signal.
		runtime.LockOSThread()
		var was unix.CPUSet
		if err := unix.SchedGetaffinity(0, &was); err != nil {
			runtime.UnlockOSThread()
			return
		}
		defer func() {
			if unix.SchedSetaffinity(0, &was) == nil {
				runtime.UnlockOSThread()
			}
		}()
		if cpus != "" && pinThread(cpus) != nil {
			return
		}
		aead, _ := chacha20poly1305.New(make([]byte, chacha20poly1305.KeySize))
		buf := make([]byte, 64<<10, 64<<10+aead.Overhead())
		nonce := make([]byte, aead.NonceSize())
		for off := 0; ; off = (off + 16<<20) % len(big) {
			t0, err := threadCPU()
			for range 16 {
				buf = aead.Seal(buf[:0], nonce, buf[:64<<10], nil)
			}
			t1, err1 := threadCPU()
			copy(big[off:off+8<<20], big[off+8<<20:off+16<<20])
			copy(big[off+8<<20:off+16<<20], big[off:off+8<<20])
			t2, err2 := threadCPU()
			if err == nil && err1 == nil && err2 == nil && t1 > t0 && t2 > t1 {
				seal = append(seal, 1/(t1-t0).Seconds())
				cp = append(cp, 16/(t2-t1).Seconds())
			}
			select {
			case <-p.stop:
				return
			case <-time.After(time.Second):
			}
		}
	}()
	return p
}

// Stop ends the probe and returns what it saw.
func (p *machineProbe) Stop() ProbeResult {
	close(p.stop)
	return <-p.done
}

// pinThread sets the calling thread's CPU affinity (only its: the
// harness's other threads stay where they are).
func pinThread(list string) error {
	cpus, err := ParseCPUList(list)
	if err != nil {
		return err
	}
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	return unix.SchedSetaffinity(0, &set)
}

// threadCPU is the calling thread's CPU time, to the nanosecond.
func threadCPU() (time.Duration, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0, err
	}
	return time.Duration(ts.Nano()), nil
}
