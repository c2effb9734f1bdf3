package testnet

import (
	"fmt"
	"net"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// The kernel here has no act_gact or netem, so "UDP is blocked" is an eBPF
// program attached with TCX to both directions of both ends of a link. It
// reads the Ethernet type and the IP protocol (IPv6: the first next header)
// with legacy packet loads, which abort to "pass" on short packets.
const (
	tcxNext = -1 // TCX_NEXT: let the packet go on
	tcxDrop = 2  // TCX_DROP
)

func dropUDPInstructions() asm.Instructions {
	return asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1), // LD_ABS needs the context in R6.
		asm.LoadAbs(12, asm.Half),   // Ethernet type, host order.
		asm.JEq.Imm(asm.R0, 0x0800, "ipv4"),
		asm.JEq.Imm(asm.R0, 0x86dd, "ipv6"),
		asm.Mov.Imm(asm.R0, tcxNext),
		asm.Return(),
		asm.LoadAbs(14+9, asm.Byte).WithSymbol("ipv4"), // IPv4 protocol.
		asm.JEq.Imm(asm.R0, 17, "drop"),
		asm.Mov.Imm(asm.R0, tcxNext),
		asm.Return(),
		asm.LoadAbs(14+6, asm.Byte).WithSymbol("ipv6"), // IPv6 next header.
		asm.JEq.Imm(asm.R0, 17, "drop"),
		asm.Mov.Imm(asm.R0, tcxNext),
		asm.Return(),
		asm.Mov.Imm(asm.R0, tcxDrop).WithSymbol("drop"),
		asm.Return(),
	}
}

func newDropUDPProgram() (*ebpf.Program, error) {
	return ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "onrt_drop_udp",
		Type:         ebpf.SchedCLS,
		License:      "GPL",
		Instructions: dropUDPInstructions(),
	})
}

// DropUDP drops every UDP packet (IPv4 and IPv6) crossing the link in either
// direction until [Link.AllowUDP] or Close; TCP and ICMP still pass. This is
// how tests make QUIC "blocked".
func (l *Link) DropUDP() error {
	l.dropUDPMux.Lock()
	defer l.dropUDPMux.Unlock()
	if len(l.dropUDP) > 0 {
		return nil
	}
	prog, err := newDropUDPProgram()
	if err != nil {
		return fmt.Errorf("testnet: load drop-udp program: %w", err)
	}
	defer prog.Close() // the links hold their own reference
	var links []link.Link
	undo := func() error {
		var first error
		for _, lk := range links {
			if err := lk.Close(); err != nil && first == nil {
				first = err
			}
		}
		return first
	}
	for _, side := range []struct {
		node *Node
		ifn  string
	}{{l.A, l.AIf}, {l.B, l.BIf}} {
		err := side.node.Do(func() error {
			iface, err := net.InterfaceByName(side.ifn)
			if err != nil {
				return err
			}
			for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
				lk, err := link.AttachTCX(link.TCXOptions{Interface: iface.Index, Program: prog, Attach: at})
				if err != nil {
					return fmt.Errorf("attach tcx %v on %s/%s: %w", at, side.node.Name, side.ifn, err)
				}
				links = append(links, lk)
			}
			return nil
		})
		if err != nil {
			_ = undo()
			return fmt.Errorf("testnet: drop udp: %w", err)
		}
	}
	l.dropUDP = append(l.dropUDP, undo)
	return nil
}

// AllowUDP undoes [Link.DropUDP].
func (l *Link) AllowUDP() error {
	l.dropUDPMux.Lock()
	defer l.dropUDPMux.Unlock()
	var first error
	for _, f := range l.dropUDP {
		if err := f(); err != nil && first == nil {
			first = err
		}
	}
	l.dropUDP = nil
	return first
}
