// Package etcdtest runs a real etcd member on loopback for tests: the
// registry's etcd back end is tested against the server, not a fake.
package etcdtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Member is an etcd process of one member on loopback.
type Member struct {
	// Client is the member's client URL.
	Client string
	peer   string
	dir    string
	bin    string
	cmd    *exec.Cmd
	exited chan struct{}
}

var (
	sharedOnce sync.Once
	shared     *Member
	sharedErr  error
)

// Shared returns a member shared by the tests of the process (each test
// uses a key prefix of its own, see Prefix). It skips the test when etcd
// is not installed, or fails it when CI=true. Stop it in TestMain with
// StopShared.
func Shared(t testing.TB) *Member {
	t.Helper()
	sharedOnce.Do(func() { shared, sharedErr = Start(os.TempDir()) })
	if sharedErr != nil {
		SkipOrFail(t, "etcd: %v", sharedErr)
	}
	return shared
}

// StopShared stops the shared member, if one was started, and removes its
// data.
func StopShared() {
	if shared != nil {
		shared.Stop()
		os.RemoveAll(shared.dir)
		os.Remove(shared.dir + ".log")
	}
}

// Prefix returns a key prefix unique to the test.
func Prefix(t testing.TB) string { return "/test/" + t.Name() + "/" }

// SkipOrFail skips the test with the reason, or fails it when CI=true.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Start starts a one-member cluster with its data in a new directory
// under parent and waits until it answers.
func Start(parent string) (*Member, error) {
	bin, err := exec.LookPath("etcd")
	if err != nil {
		return nil, fmt.Errorf("%w (apt-get install etcd-server; make deps does)", err)
	}
	dir, err := os.MkdirTemp(parent, "etcd-")
	if err != nil {
		return nil, err
	}
	cp, err := freePort()
	if err != nil {
		return nil, err
	}
	pp, err := freePort()
	if err != nil {
		return nil, err
	}
	m := &Member{Client: "http://127.0.0.1:" + strconv.Itoa(cp), peer: "http://127.0.0.1:" + strconv.Itoa(pp), dir: dir, bin: bin}
	if err := m.Restart(); err != nil {
		return nil, err
	}
	return m, nil
}

// Restart starts the member again (after Stop) with its data, and waits
// until it answers.
func (m *Member) Restart() error {
	m.cmd = exec.Command(m.bin, "--name", "m1", "--data-dir", m.dir,
		"--listen-client-urls", m.Client, "--advertise-client-urls", m.Client,
		"--listen-peer-urls", m.peer, "--initial-advertise-peer-urls", m.peer,
		"--initial-cluster", "m1="+m.peer, "--log-level", "error", "--logger", "zap")
	// Its log goes to a file in its directory, not to the test's
	// output: a member outliving the test binary must not hold it open.
	logf, err := os.OpenFile(m.dir+".log", os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	m.cmd.Stdout, m.cmd.Stderr = logf, logf
	err = m.cmd.Start()
	logf.Close()
	if err != nil {
		return err
	}
	m.exited = make(chan struct{})
	go func() { _ = m.cmd.Wait(); close(m.exited) }()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.Client}, DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		m.Stop()
		return err
	}
	defer cli.Close()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Get(ctx, "health")
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-m.exited:
			return fmt.Errorf("etcd exited at start")
		case <-time.After(100 * time.Millisecond):
		}
	}
	m.Stop()
	return fmt.Errorf("etcd at %s does not answer", m.Client)
}

// Stop kills the member and waits for it to exit.
func (m *Member) Stop() {
	_ = m.cmd.Process.Kill()
	<-m.exited
}
