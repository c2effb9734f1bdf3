package testnet

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is a process running inside a node's namespace. Its output goes to
// the Net's log line by line, prefixed with the node and program name.
type Proc struct {
	Cmd  *exec.Cmd
	name string

	done    chan struct{}
	err     error
	copying sync.WaitGroup

	outMu sync.Mutex
	out   []string // the last maxOutputLines lines of output
}

const maxOutputLines = 2000

// Output returns the last lines the process printed (stdout and stderr
// interleaved), up to 2000.
func (p *Proc) Output() string {
	p.outMu.Lock()
	defer p.outMu.Unlock()
	return strings.Join(p.out, "\n")
}

func (p *Proc) keep(line string) {
	p.outMu.Lock()
	defer p.outMu.Unlock()
	if len(p.out) == maxOutputLines {
		p.out = append(p.out[:0], p.out[maxOutputLines/2:]...)
	}
	p.out = append(p.out, line)
}

// Start starts name with args inside the node's namespace. The process runs
// in its own process group and is killed when the Net closes, if it has not
// exited by then.
func (node *Node) Start(name string, args ...string) (*Proc, error) {
	return node.StartCmd(node.Command(context.Background(), name, args...))
}

// StartCmd starts cmd, which must come from [Node.Command], with the same
// output capture and lifetime as [Node.Start]. Set cmd.Env, cmd.Dir or
// cmd.Stdin before calling it; Stdout and Stderr must be left nil.
func (node *Node) StartCmd(cmd *exec.Cmd) (*Proc, error) {
	n := node.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, fmt.Errorf("testnet: start %s in %s: net is closed", cmd.Path, node.Name)
	}
	label := node.Name
	if len(cmd.Args) > 4 { // ip netns exec NS name ...
		label += " " + filepath.Base(cmd.Args[4])
	}
	p := &Proc{Cmd: cmd, name: label, done: make(chan struct{})}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("testnet: start %s in %s: %w", cmd.Path, node.Name, err)
	}
	for _, r := range []io.Reader{stdout, stderr} {
		p.copying.Add(1)
		go func() {
			defer p.copying.Done()
			sc := bufio.NewScanner(r)
			sc.Buffer(make([]byte, 64*1024), 1024*1024)
			for sc.Scan() {
				p.keep(sc.Text())
				n.logf("[%s] %s", label, sc.Text())
			}
		}()
	}
	go func() {
		p.copying.Wait() // Wait closes the pipes: drain them first.
		p.err = cmd.Wait()
		close(p.done)
	}()
	n.procs = append(n.procs, p)
	return p, nil
}

// Done is closed when the process has exited and its output is logged.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Wait waits for the process to exit and returns its exit error.
func (p *Proc) Wait() error {
	<-p.done
	return p.err
}

// Signal sends sig to the process (not its group).
func (p *Proc) Signal(sig syscall.Signal) error {
	return p.Cmd.Process.Signal(sig)
}

// Stop sends SIGTERM to the process group, then SIGKILL after 3 seconds,
// and waits until the process has exited and its output is logged.
func (p *Proc) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	pgid := p.Cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(3 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
}
