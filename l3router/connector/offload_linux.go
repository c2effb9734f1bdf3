package connector

import (
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/onramp-net/onramp/l3router/wg"
)

// TUN offload flags as tun.CreateTUN sets them (tun_linux.go).
const (
	tunTCPOffloads = unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6
	tunUDPOffloads = unix.TUN_F_USO4 | unix.TUN_F_USO6
)

// probeOffloads finds out what tun.CreateTUN enabled. A TUN with
// virtio-net headers has a batch size above 1 and the TCP offloads
// (tun.CreateTUN fails without them). For UDP it sets the same flags again
// (TUNSETOFFLOAD replaces the set; the kernel refuses unknown flags before
// changing anything), which succeeds exactly when its own attempt did.
// The socket's UDP_SEGMENT and UDP_GRO are asked of a throwaway socket in
// the same namespace.
func probeOffloads(td tun.Device) Offloads {
	o := Offloads{TUNBatch: td.BatchSize(), BindBatch: wg.RecvBatch}
	if o.TUNBatch > 1 {
		o.TSO = true
		if rc, err := td.File().SyscallConn(); err == nil {
			_ = rc.Control(func(fd uintptr) {
				o.USO = unix.IoctlSetInt(int(fd), unix.TUNSETOFFLOAD, tunTCPOffloads|tunUDPOffloads) == nil
			})
		}
	}
	o.UDPGSO, o.UDPGRO = probeUDPOffload()
	return o
}

func probeUDPOffload() (gso, gro bool) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return false, false
		}
	}
	defer unix.Close(fd)
	_, err = unix.GetsockoptInt(fd, unix.IPPROTO_UDP, unix.UDP_SEGMENT)
	gso = err == nil
	if unix.SetsockoptInt(fd, unix.IPPROTO_UDP, unix.UDP_GRO, 1) == nil {
		v, err := unix.GetsockoptInt(fd, unix.IPPROTO_UDP, unix.UDP_GRO)
		gro = err == nil && v == 1
	}
	return gso, gro
}
