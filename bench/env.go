package bench

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"

	"github.com/onramp-net/onramp/testnet"
)

// Env is what every scenario of a run shares: sizes, CPU pinning, the
// binaries built for the run, and the log of the scenario running now.
type Env struct {
	Quick       bool
	Reps        int
	BulkSeconds int     // iperf3 -t and the raw senders' duration
	Echoes      int     // sequential echoes per latency run
	ConnSeconds float64 // duration of a connection-rate run
	ConnWorkers int     // concurrent dialers in a connection-rate run
	Streams     int     // concurrent streams in the memory scenario
	GoBenchArgs []string
	// SUTCPUs and LoadCPUs are CPU lists for taskset ("1", "0-3"); empty
	// means no pinning (a one-CPU machine).
	SUTCPUs, LoadCPUs string
	AllCPUs           string
	// Bins are the paths of the harness's helper binaries by name
	// (rawquic, rawtls, loadgen), built once per run.
	Bins map[string]string
	// ModRoot is the module's root directory.
	ModRoot string

	// GoBench receives the microbenchmark output of the go scenario.
	GoBench *GoBenchRun

	// ProfileDir, if set, is where the last repetition of every scenario
	// is profiled (see startPerf).
	ProfileDir string
	// Current is the name of the scenario running now; Profiling is set
	// while its profiled repetition runs.
	Current   string
	Profiling bool
	// Netstat, if set, prints after every run what moved in the network
	// namespaces of the processes under test (see [NetCounters.Summary]).
	Netstat bool

	log *ringLog
}

// Logf writes to the current scenario's log (shown in part on failure).
func (env *Env) Logf(format string, args ...any) {
	if env.log != nil {
		env.log.printf(format, args...)
	}
}

// Build brings a topology up for the current scenario, with its output in
// the scenario's log. Every node gets the full ephemeral port range and
// TIME_WAIT reuse for the connection-rate runs.
func (env *Env) Build(ctx context.Context, topo testnet.Topology) (*testnet.Net, error) {
	n, err := testnet.Build(ctx, topo, testnet.Options{Logf: env.Logf})
	if err != nil {
		return nil, err
	}
	for _, node := range n.Nodes() {
		for k, v := range map[string]string{
			"net/ipv4/ip_local_port_range": "1024 65535",
			"net/ipv4/tcp_tw_reuse":        "1",
		} {
			if err := node.Sysctl(k, v); err != nil {
				n.Close()
				return nil, err
			}
		}
	}
	return n, nil
}

// SUTCommand returns a command running name inside node, pinned to the
// SUT CPUs.
func (env *Env) SUTCommand(ctx context.Context, node *testnet.Node, name string, args ...string) *exec.Cmd {
	if env.SUTCPUs == "" {
		return node.Command(ctx, name, args...)
	}
	return node.Command(ctx, "taskset", append([]string{"-c", env.SUTCPUs, name}, args...)...)
}

// StartSUT starts a process under test in node, pinned to the SUT CPUs.
// Its PID is the program's own: ip netns exec and taskset exec it.
func (env *Env) StartSUT(node *testnet.Node, name string, args ...string) (*testnet.Proc, error) {
	return node.StartCmd(env.SUTCommand(context.Background(), node, name, args...))
}

// PinSUT moves every thread of pid to the SUT CPUs (for processes that
// testnet starts, such as the edge and the connector).
func (env *Env) PinSUT(pid int) error {
	if env.SUTCPUs == "" {
		return nil
	}
	return PinProcess(pid, env.SUTCPUs)
}

// ringLog keeps the last lines of a scenario's log.
type ringLog struct {
	mu    sync.Mutex
	lines []string
	max   int
	w     io.Writer // also written here (verbose), if set
}

func newRingLog(max int, w io.Writer) *ringLog { return &ringLog{max: max, w: w} }

func (r *ringLog) printf(format string, args ...any) {
	s := strings.TrimRight(fmt.Sprintf(format, args...), "\n")
	r.mu.Lock()
	defer r.mu.Unlock()
	for line := range strings.SplitSeq(s, "\n") {
		if len(r.lines) >= r.max {
			r.lines = append(r.lines[:0], r.lines[len(r.lines)-r.max/2:]...)
		}
		r.lines = append(r.lines, line)
		if r.w != nil {
			fmt.Fprintln(r.w, "    | "+line)
		}
	}
}

func (r *ringLog) tail(n int) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.lines
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
