// Command loadgen is the harness's own TCP load generator, run by
// bench/cmd/bench inside the client namespace. Every mode prints one JSON
// object on stdout; latencies are raw nanoseconds, so the harness computes
// percentiles with its tested code.
//
//	loadgen echo -addr A -n 20000 -size 64       # sequential echoes on one connection
//	loadgen connrate -addr A -d 5s -c 8          # new connections per second, each a 1-byte echo
//	loadgen streams -addr A -n 1000 -active 100 -hold 5s  # many open streams, some busy
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: loadgen echo|connrate|streams [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	addr := fs.String("addr", "", "host:port of a TCP echo service")
	n := fs.Int("n", 1000, "echoes (echo) or streams (streams)")
	size := fs.Int("size", 64, "message size in bytes (echo, streams)")
	warm := fs.Int("warmup", 200, "echoes not recorded (echo)")
	dur := fs.Duration("d", 5*time.Second, "duration (connrate)")
	workers := fs.Int("c", 8, "concurrent dialers (connrate)")
	active := fs.Int("active", 100, "streams that keep echoing while the rest idle (streams)")
	hold := fs.Duration("hold", 5*time.Second, "how long the streams stay open (streams)")
	_ = fs.Parse(os.Args[2:])
	if *addr == "" {
		fmt.Fprintln(os.Stderr, "loadgen: -addr is required")
		os.Exit(2)
	}
	var out any
	var err error
	switch os.Args[1] {
	case "echo":
		out, err = echo(*addr, *n, *warm, *size)
	case "connrate":
		out, err = connRate(*addr, *dur, *workers)
	case "streams":
		out, err = streams(*addr, *n, *active, *size, *hold)
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	_ = json.NewEncoder(os.Stdout).Encode(out)
}

func dial(addr string) (net.Conn, error) {
	return net.DialTimeout("tcp", addr, 10*time.Second)
}

func echoOnce(c net.Conn, msg, buf []byte) error {
	if _, err := c.Write(msg); err != nil {
		return err
	}
	_, err := io.ReadFull(c, buf)
	return err
}

type echoReport struct {
	Echoes    int     `json:"echoes"` // including the warm-up
	Latencies []int64 `json:"latencies_ns"`
}

func echo(addr string, n, warm, size int) (*echoReport, error) {
	c, err := dial(addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Minute))
	msg, buf := make([]byte, size), make([]byte, size)
	for i := range msg {
		msg[i] = byte(i)
	}
	rep := &echoReport{Echoes: warm + n, Latencies: make([]int64, 0, n)}
	for i := 0; i < warm+n; i++ {
		t := time.Now()
		if err := echoOnce(c, msg, buf); err != nil {
			return nil, fmt.Errorf("echo %d: %w", i, err)
		}
		if i >= warm {
			rep.Latencies = append(rep.Latencies, int64(time.Since(t)))
		}
	}
	return rep, nil
}

type connReport struct {
	Conns     int64   `json:"conns"`
	Errors    int64   `json:"errors"`
	FirstErr  string  `json:"first_error,omitempty"`
	Seconds   float64 `json:"seconds"`
	Latencies []int64 `json:"latencies_ns"` // dial + 1-byte echo + close
}

func connRate(addr string, d time.Duration, workers int) (*connReport, error) {
	var mu sync.Mutex
	rep := &connReport{}
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lats []int64
			var errs int64
			var first error
			msg, buf := []byte{'x'}, []byte{0}
			for time.Now().Before(deadline) {
				t := time.Now()
				err := func() error {
					c, err := dial(addr)
					if err != nil {
						return err
					}
					defer c.Close()
					_ = c.SetDeadline(time.Now().Add(10 * time.Second))
					return echoOnce(c, msg, buf)
				}()
				if err != nil {
					errs++
					if first == nil {
						first = err
					}
					continue
				}
				lats = append(lats, int64(time.Since(t)))
			}
			mu.Lock()
			defer mu.Unlock()
			rep.Latencies = append(rep.Latencies, lats...)
			rep.Errors += errs
			if first != nil && rep.FirstErr == "" {
				rep.FirstErr = first.Error()
			}
		}()
	}
	wg.Wait()
	rep.Seconds = time.Since(start).Seconds()
	rep.Conns = int64(len(rep.Latencies))
	if rep.Conns == 0 {
		return nil, fmt.Errorf("no connection succeeded: %s", rep.FirstErr)
	}
	return rep, nil
}

type streamsReport struct {
	Opened       int     `json:"opened"`
	OpenSeconds  float64 `json:"open_seconds"`
	ActiveEchoes int64   `json:"active_echoes"`
	Errors       int64   `json:"errors"`
	FirstErr     string  `json:"first_error,omitempty"`
}

// streams opens n connections (16 dialers at a time), echoes once on each,
// then keeps `active` of them echoing for hold while the others idle, and
// finally echoes once more on every one of them.
func streams(addr string, n, active, size int, hold time.Duration) (*streamsReport, error) {
	conns := make([]net.Conn, n)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	rep := &streamsReport{}
	var errs atomic.Int64
	var firstMu sync.Mutex
	noteErr := func(err error) {
		errs.Add(1)
		firstMu.Lock()
		if rep.FirstErr == "" {
			rep.FirstErr = err.Error()
		}
		firstMu.Unlock()
	}
	start := time.Now()
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := dial(addr)
			if err != nil {
				noteErr(err)
				return
			}
			_ = c.SetDeadline(time.Now().Add(hold + 2*time.Minute))
			if err := echoOnce(c, make([]byte, size), make([]byte, size)); err != nil {
				c.Close()
				noteErr(err)
				return
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	rep.OpenSeconds = time.Since(start).Seconds()
	for _, c := range conns {
		if c != nil {
			rep.Opened++
		}
	}
	if rep.Opened < n {
		return nil, fmt.Errorf("opened %d of %d streams: %s", rep.Opened, n, rep.FirstErr)
	}
	stop := time.Now().Add(hold)
	var echoes atomic.Int64
	for i := 0; i < active && i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg, buf := make([]byte, size), make([]byte, size)
			for time.Now().Before(stop) {
				if err := echoOnce(conns[i], msg, buf); err != nil {
					noteErr(err)
					return
				}
				echoes.Add(1)
			}
		}()
	}
	wg.Wait()
	for _, c := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := echoOnce(c, make([]byte, size), make([]byte, size)); err != nil {
				noteErr(err)
			}
		}()
	}
	wg.Wait()
	rep.ActiveEchoes = echoes.Load()
	rep.Errors = errs.Load()
	return rep, nil
}
