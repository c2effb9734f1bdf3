package testnet

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// NotifySocket stands in for systemd's notify socket: a unixgram socket
// at a path (which the nodes' namespaces share, unlike abstract names)
// that the edge or connector, given NOTIFY_SOCKET=Path, sends its sd_notify
// messages to.
type NotifySocket struct {
	Path string
	conn *net.UnixConn
	msgs chan NotifyMsg
}

// NotifyMsg is one datagram received: its assignments, one a line.
type NotifyMsg struct {
	At   time.Time
	Text string
}

// Has reports whether the message holds the assignment kv ("READY=1").
func (m NotifyMsg) Has(kv string) bool {
	for _, l := range strings.Split(m.Text, "\n") {
		if l == kv {
			return true
		}
	}
	return false
}

// Value returns the value of key in the message ("STATUS"), if it has it.
func (m NotifyMsg) Value(key string) (string, bool) {
	for _, l := range strings.Split(m.Text, "\n") {
		if v, ok := strings.CutPrefix(l, key+"="); ok {
			return v, true
		}
	}
	return "", false
}

// ListenNotify makes a notify socket named name in dir. onMsg, if not nil,
// sees each message as it arrives, before [NotifySocket.Next] returns it:
// what it checks is the state of the world at the moment the message was
// sent. Close it when done.
func ListenNotify(dir, name string, onMsg func(NotifyMsg)) (*NotifySocket, error) {
	path := filepath.Join(dir, name)
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("notify socket: %w", err)
	}
	_ = os.Chmod(path, 0o666)
	s := &NotifySocket{Path: path, conn: conn, msgs: make(chan NotifyMsg, 1024)}
	go func() {
		defer close(s.msgs)
		buf := make([]byte, 64<<10)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			m := NotifyMsg{At: time.Now(), Text: strings.TrimSuffix(string(buf[:n]), "\n")}
			if onMsg != nil {
				onMsg(m)
			}
			select {
			case s.msgs <- m:
			default: // a test that stopped reading
			}
		}
	}()
	return s, nil
}

// Env is the environment variable that points a process at the socket.
func (s *NotifySocket) Env() string { return "NOTIFY_SOCKET=" + s.Path }

// Next returns the next message, or an error after timeout.
func (s *NotifySocket) Next(timeout time.Duration) (NotifyMsg, error) {
	select {
	case m, ok := <-s.msgs:
		if !ok {
			return NotifyMsg{}, errors.New("notify socket closed")
		}
		return m, nil
	case <-time.After(timeout):
		return NotifyMsg{}, fmt.Errorf("no sd_notify message in %v", timeout)
	}
}

// WaitFor returns the first message holding kv within timeout, and the
// messages before it.
func (s *NotifySocket) WaitFor(kv string, timeout time.Duration) (NotifyMsg, []NotifyMsg, error) {
	deadline := time.Now().Add(timeout)
	var before []NotifyMsg
	for {
		m, err := s.Next(time.Until(deadline))
		if err != nil {
			return NotifyMsg{}, before, fmt.Errorf("waiting for %s: %w (got %q)", kv, err, texts(before))
		}
		if m.Has(kv) {
			return m, before, nil
		}
		before = append(before, m)
	}
}

func texts(ms []NotifyMsg) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Text
	}
	return out
}

// Close closes the socket.
func (s *NotifySocket) Close() error {
	err := s.conn.Close()
	_ = os.Remove(s.Path)
	return err
}
