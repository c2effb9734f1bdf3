package prefilter

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/onramp-net/onramp/dataplane/internal/closing"
)

// Filter is the loaded pre-filter: its program and counters, attached to
// interfaces or not.
type Filter struct {
	objs  bpfObjects
	links []link.Link
	modes map[string]string
	// guard keeps the maps and the program from being used while, or
	// after, Close releases them (a handshake proving a source, a
	// metrics scrape, during shutdown).
	guard closing.Guard
}

// Load loads the pre-filter for cfg into the kernel. It needs
// CAP_BPF/CAP_SYS_ADMIN and a kernel with BTF; the error says which is
// missing.
func Load(cfg Config) (*Filter, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	spec, err := loadBpf()
	if err != nil {
		return nil, fmt.Errorf("prefilter: %w", err)
	}
	si, sb := gcra(cfg.Limits.PerSource, cfg.Limits.PerSourceBurst)
	gi, gb := gcra(cfg.Limits.Unproven, cfg.Limits.UnprovenBurst)
	for name, v := range map[string]any{
		"wg_port": cfg.WireGuardPort, "quic_port": cfg.QUICPort, "quic_short_dcid_len": uint8(cfg.QUICConnIDLen),
		"source_interval_ns": si, "source_burst_ns": sb, "global_interval_ns": gi, "global_burst_ns": gb,
	} {
		if err := spec.Variables[name].Set(v); err != nil {
			return nil, fmt.Errorf("prefilter: set %s: %w", name, err)
		}
	}
	f := &Filter{modes: map[string]string{}}
	if err := spec.LoadAndAssign(&f.objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("prefilter: the kernel's verifier refused the program: %+v", ve)
		}
		return nil, fmt.Errorf("prefilter: load the XDP program (needs root or CAP_BPF and CAP_NET_ADMIN): %w", err)
	}
	return f, nil
}

// Attach attaches the pre-filter to the interface named ifname: natively
// where its driver runs XDP, with the kernel's generic XDP otherwise.
func (f *Filter) Attach(ifname string) error {
	ifc, err := net.InterfaceByName(ifname)
	if err != nil {
		return fmt.Errorf("prefilter: %w", err)
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: f.objs.Prefilter, Interface: ifc.Index, Flags: link.XDPDriverMode})
	mode := "native"
	if err != nil {
		l, err = link.AttachXDP(link.XDPOptions{Program: f.objs.Prefilter, Interface: ifc.Index, Flags: link.XDPGenericMode})
		mode = "generic"
	}
	if err != nil {
		return fmt.Errorf("prefilter: attach XDP to %s: %w", ifname, err)
	}
	f.links = append(f.links, l)
	f.modes[ifname] = mode
	return nil
}

// Mode returns how the program is attached to the interface: "native"
// (its driver runs it), "generic" (the kernel's generic XDP) or "" (not
// attached).
func (f *Filter) Mode(ifname string) string { return f.modes[ifname] }

// Run runs the program on one Ethernet frame (BPF_PROG_TEST_RUN) and
// returns its verdict: true if it passes the frame. The counters count it.
func (f *Filter) Run(frame []byte) (pass bool, err error) {
	if !f.guard.Use() {
		return false, fmt.Errorf("prefilter: test run: %w", os.ErrClosed)
	}
	defer f.guard.Done()
	ret, err := f.objs.Prefilter.Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		return false, fmt.Errorf("prefilter: test run: %w", err)
	}
	switch ret {
	case 1: // XDP_DROP
		return false, nil
	case 2: // XDP_PASS
		return true, nil
	}
	return false, fmt.Errorf("prefilter: the program returned %d", ret)
}

// source is prefilter.c's struct source: an IPv4 address, or an IPv6
// /64, as the packet carries them.
type source struct {
	Addr [2]uint32
	V6   uint32
}

func sourceOf(a netip.Addr) source {
	var s source
	a = a.Unmap()
	if a.Is4() {
		b := a.As4()
		s.Addr[0] = binary.NativeEndian.Uint32(b[:])
		return s
	}
	b := a.As16()
	s.Addr[0] = binary.NativeEndian.Uint32(b[0:4])
	s.Addr[1] = binary.NativeEndian.Uint32(b[4:8])
	s.V6 = 1
	return s
}

// Prove marks the source of a (its IPv4 address or IPv6 /64) as proven:
// the edge completed a handshake with it, so its openers pass the global
// ceiling (the per-source limit still applies). The map keeps the 65,536
// sources proven last.
func (f *Filter) Prove(a netip.Addr) error {
	if !f.guard.Use() {
		return fmt.Errorf("prefilter: prove %v: %w", a, os.ErrClosed)
	}
	defer f.guard.Done()
	if err := f.objs.Proven.Put(sourceOf(a), uint8(1)); err != nil {
		return fmt.Errorf("prefilter: prove %v: %w", a, err)
	}
	return nil
}

// Proven reports whether the source of a is proven now.
func (f *Filter) Proven(a netip.Addr) bool {
	if !f.guard.Use() {
		return false
	}
	defer f.guard.Done()
	var v uint8
	return f.objs.Proven.Lookup(sourceOf(a), &v) == nil
}

// Counts returns the packets counted by reason, summed over the CPUs.
func (f *Filter) Counts() ([NumReasons]uint64, error) {
	var out [NumReasons]uint64
	if !f.guard.Use() {
		return out, fmt.Errorf("prefilter: read the counters: %w", os.ErrClosed)
	}
	defer f.guard.Done()
	for r := range NumReasons {
		var per []uint64
		if err := f.objs.Counts.Lookup(uint32(r), &per); err != nil {
			return out, fmt.Errorf("prefilter: read the counters: %w", err)
		}
		for _, v := range per {
			out[r] += v
		}
	}
	return out, nil
}

// Close detaches the program from its interfaces and unloads it.
func (f *Filter) Close() error {
	return f.guard.Close(func() error {
		var errs []error
		for _, l := range f.links {
			errs = append(errs, l.Close())
		}
		errs = append(errs, f.objs.Close())
		return errors.Join(errs...)
	})
}
