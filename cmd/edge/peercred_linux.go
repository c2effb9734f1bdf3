package main

import (
	"errors"
	"net"

	"golang.org/x/sys/unix"
)

// errNoPeerCred is peerOf's error where the system has no SO_PEERCRED
// (never on Linux).
var errNoPeerCred = errors.New("peer credentials are not available on this system")

// peerOf returns the credentials of the process that connected c, from
// SO_PEERCRED: what it was when it called connect(2).
func peerOf(c net.Conn) peer {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return peer{err: errors.New("not a unix socket")}
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return peer{err: err}
	}
	var cred *unix.Ucred
	cerr := raw.Control(func(fd uintptr) {
		cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if err = errors.Join(cerr, err); err != nil {
		return peer{err: err}
	}
	return peer{uid: cred.Uid, gid: cred.Gid, pid: cred.Pid}
}
