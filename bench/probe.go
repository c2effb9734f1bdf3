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

// The machine probe measures how fast the SUT CPU is just before and
// just after each run, while the processes under test are idle: on a
// thread pinned to it, it seals 1 MiB with ChaCha20-Poly1305 (work that
// stays in the core's own caches) and copies 16 MiB (work that goes
// beyond them, to the shared L3 cache and memory), each timed in the
// thread's own CPU time, three times on each side of the run (about 10
// ms in all). A machine that slows down (other tenants of the host on
// the shared cache and memory, a lower clock) shows as fewer MB per CPU
// second while the code under test is the same. On this project's
// benchmark machine, copying once a second with nothing else running
// swings between about 8 and 16 GB/s in phases of tens of seconds, and
// slow runs mostly fall in the slow phases; around runs (caches warm
// from the run before) the copy reads 12 to 25 GB/s.

// ProbeResult is what a probe saw: the medians of its samples in MB (of
// 2^20 bytes) per CPU second; NaN without a sample.
type ProbeResult struct {
	Seal, Copy float64
}

func (r ProbeResult) String() string {
	if math.IsNaN(r.Copy) {
		return "no sample"
	}
	return fmt.Sprintf("sealed %.0f MB per CPU-s (ChaCha20-Poly1305, in the core's caches), copied %.0f (beyond them)", r.Seal, r.Copy)
}

// probeMemory is the probe's copy buffer, made once per process.
var probeMemory = sync.OnceValue(func() []byte {
	b := make([]byte, 32<<20)
	for i := range b {
		b[i] = byte(i)
	}
	return b
})

// probeSamples are the samples on each side of a run.
const probeSamples = 3

// machineProbe gathers the samples of one run.
type machineProbe struct {
	seal, copy []float64
}

// sample takes probeSamples samples on a thread pinned to cpus (a
// taskset list; "" leaves the thread where it is). A sample that cannot
// be taken is left out.
func (p *machineProbe) sample(cpus string) {
	// The thread is given back as it was: were it to end (a locked
	// goroutine returning), the children the harness started from it
	// would get their parent-death signal.
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
	big := probeMemory()
	aead, _ := chacha20poly1305.New(make([]byte, chacha20poly1305.KeySize))
	buf := make([]byte, 64<<10, 64<<10+aead.Overhead())
	nonce := make([]byte, aead.NonceSize())
	for range probeSamples {
		t0, err := threadCPU()
		for range 16 {
			buf = aead.Seal(buf[:0], nonce, buf[:64<<10], nil)
		}
		t1, err1 := threadCPU()
		copy(big[:8<<20], big[8<<20:16<<20])
		copy(big[16<<20:24<<20], big[24<<20:])
		t2, err2 := threadCPU()
		if err == nil && err1 == nil && err2 == nil && t1 > t0 && t2 > t1 {
			p.seal = append(p.seal, 1/(t1-t0).Seconds())
			p.copy = append(p.copy, 16/(t2-t1).Seconds())
		}
	}
}

// result is the medians of the samples taken.
func (p *machineProbe) result() ProbeResult {
	return ProbeResult{Seal: Summarize(p.seal).Median, Copy: Summarize(p.copy).Median}
}

// threadCPU is the calling thread's CPU time, to the nanosecond.
func threadCPU() (time.Duration, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0, err
	}
	return time.Duration(ts.Nano()), nil
}
