// Package diag holds the checks of `connector diag` and `edge diag`: each
// looks at one thing users of a tunnel most often get stuck on and says
// in plain words what it found and, when something is wrong, how to fix
// it. It also writes the --bundle tarball for a bug report.
//
// What a test cannot change on its host (the global sysctls, the clock)
// is read through [Host], whose fields a test points elsewhere.
package diag

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Status is a check's verdict.
type Status int

const (
	OK   Status = iota // nothing to do
	Warn               // works, but worse than it could, or may break
	Fail               // broken: this stops the tunnel or a service
)

func (s Status) String() string {
	switch s {
	case OK:
		return "OK"
	case Warn:
		return "WARN"
	}
	return "FAIL"
}

// Result is one check's finding.
type Result struct {
	Status Status
	// Check names what was checked and of what, e.g. "dns edge.example.com".
	Check string
	// Detail says what was found, in plain words.
	Detail string
	// Fix says what to do about it; empty when there is nothing to do.
	Fix string
}

// Line is the result as the report prints it, one line.
func (r Result) Line() string {
	s := fmt.Sprintf("%-4s  %s: %s", r.Status, r.Check, r.Detail)
	if r.Fix != "" {
		s += " Fix: " + r.Fix
	}
	return s
}

// Report is the findings of a run, in the order checked.
type Report struct {
	Results []Result
}

// Add appends results.
func (r *Report) Add(res ...Result) { r.Results = append(r.Results, res...) }

// Failed reports whether any check failed.
func (r *Report) Failed() bool { return r.count(Fail) > 0 }

func (r *Report) count(s Status) int {
	n := 0
	for _, res := range r.Results {
		if res.Status == s {
			n++
		}
	}
	return n
}

// Write prints one line per check and a summary.
func (r *Report) Write(w io.Writer) error {
	var b strings.Builder
	for _, res := range r.Results {
		b.WriteString(res.Line())
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "\n%d checks: %d OK, %d WARN, %d FAIL\n", len(r.Results), r.count(OK), r.count(Warn), r.count(Fail))
	_, err := io.WriteString(w, b.String())
	return err
}

// Host is where the checks read the host's state. The zero value reads
// the real host; tests point ProcRoot at a fake tree and shift the clock.
type Host struct {
	// ProcRoot replaces /proc for the sysctls (ProcRoot/sys/...).
	ProcRoot string
	// ClockOffset is added to the local clock where a check compares it
	// with an edge's: a test's skewed clock without changing the host's.
	ClockOffset time.Duration
	// TunPath replaces /dev/net/tun.
	TunPath string
}

func (h Host) procRoot() string {
	if h.ProcRoot == "" {
		return "/proc"
	}
	return h.ProcRoot
}

// Sysctl reads a sysctl by its dotted name (net.core.rmem_max).
func (h Host) Sysctl(name string) (string, error) {
	p := filepath.Join(h.procRoot(), "sys", strings.ReplaceAll(name, ".", "/"))
	b, err := os.ReadFile(p)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

func (h Host) sysctlInt(name string) (int64, error) {
	s, err := h.Sysctl(name)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.Fields(s + " 0")[0], 10, 64)
}

// Facts returns the host facts of a bundle: kernel and the sysctls the
// checks look at.
func (h Host) Facts() string {
	var b strings.Builder
	for _, name := range []string{"kernel.ostype", "kernel.osrelease", "kernel.version", "kernel.hostname",
		"net.core.rmem_max", "net.core.wmem_max", "net.core.rmem_default", "net.core.wmem_default",
		"net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding", "net.ipv4.udp_mem"} {
		v, err := h.Sysctl(name)
		if err != nil {
			v = "(" + err.Error() + ")"
		}
		fmt.Fprintf(&b, "%s = %s\n", name, v)
	}
	return b.String()
}

// QUICBuffer is the socket buffer size quic-go asks for (7 MiB); below
// it, it logs that it could not raise the buffers and throughput over
// fast or long paths suffers.
const QUICBuffer = 7 << 20

// UDPBuffers checks net.core.rmem_max and wmem_max against [QUICBuffer].
// A process with CAP_NET_ADMIN (root, or the systemd units, which grant
// it) forces its sockets' buffers past them (SO_RCVBUFFORCE), but one run
// by hand as another user cannot, so a low limit is a warning.
func UDPBuffers(h Host) []Result {
	var out []Result
	for _, name := range []string{"net.core.rmem_max", "net.core.wmem_max"} {
		r := Result{Check: "udp buffer " + name}
		v, err := h.sysctlInt(name)
		switch {
		case err != nil:
			r.Status, r.Detail = Warn, fmt.Sprintf("cannot read it: %v.", err)
		case v >= QUICBuffer:
			r.Detail = fmt.Sprintf("%d bytes, enough for the %d bytes (7 MiB) QUIC asks for.", v, QUICBuffer)
		default:
			r.Status = Warn
			r.Detail = fmt.Sprintf("%d bytes, below the %d bytes (7 MiB) QUIC asks for: its UDP socket buffers stay small, and fast or long-distance transfers lose packets and slow down (unless onramp runs as root or with CAP_NET_ADMIN, which forces its own buffers).", v, QUICBuffer)
			r.Fix = fmt.Sprintf("sysctl -w %s=7500000, and to keep it after a reboot: echo '%s=7500000' > /etc/sysctl.d/60-onramp.conf", name, name)
		}
		out = append(out, r)
	}
	return out
}
