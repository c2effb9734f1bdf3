package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/onramp-net/onramp/testnet"
)

// The edge as a direct L4 proxy: bindings whose service is an origin the
// edge dials itself, with no tunnel and no connector; the relay engine
// (dataplane/relay) moves the bytes between the user's connection and
// the origin's with the strategy edge.yml forces. The world is the
// peers' ([RoutedLine]): the edge node reaches the origin through "conn",
// which routes, exactly as HAProxy's fixture does, and only the edge
// process is under test: started under taskset on the SUT CPUs (as
// HAProxy is), its CPU and memory measured alone.

// directStrategies are the relay strategies measured, the default first:
// the goals are on splice, the others are measured next to it.
var directStrategies = []string{"splice", "copy", "sockmap"}

func directName(strategy, suffix string) string { return "direct-" + strategy + "/" + suffix }

func directLabel(strategy string) string { return "onramp edge direct, " + strategy }

// directScenarios are an L4 area's direct proxies, one per strategy: the
// splice one (the default) with goals, copy and sockmap compared with it
// (they are its references, onramp scenarios themselves). The three share
// an Interleave key: with the peers the goals name they run as one group,
// every rig up and each repetition running each once, so the ratios of
// the strategies to one another and to the peers come from the same
// minutes of the machine.
func directScenarios(suffix, area string, metrics []Metric, est func(*Env) float64,
	run func(context.Context, *Env, *Rig) (Sample, error), fresh bool, goals []Goal) []Scenario {
	var out []Scenario
	for _, st := range directStrategies {
		sc := Scenario{Name: directName(st, suffix), Area: area, Label: directLabel(st), Onramp: true, Setup: setupDirect(st),
			Metrics: metrics, Estimate: est, Start: startDirect(st), Run: run, FreshPerRun: fresh,
			Interleave: "direct/" + suffix}
		if st == directStrategies[0] {
			sc.Goals = goals
		} else {
			sc.PeerOf = []string{directName(directStrategies[0], suffix)}
		}
		out = append(out, sc)
	}
	return out
}

func setupDirect(strategy string) string {
	return fmt.Sprintf("onramp edge in `edge` as a direct L4 proxy (it dials the origin itself: no tunnel, no connector; relay strategy `%s`) on the SUT CPUs, `conn` routes; origin and load as for the tunnel", strategy)
}

// directEdgeYAML binds the bench ports on the edge straight to the
// origins, relayed with strategy. All the bench's users come from one
// client address: the limits per source and in total are raised as for
// the tunnel.
func directEdgeYAML(data, strategy string) string {
	return fmt.Sprintf(`data: %[1]s
bindings:
  - {listen: "tcp://%[2]s:%[3]d", service: "tcp://%[4]s:%[3]d"}
  - {listen: "tcp://%[2]s:%[5]d", service: "tcp://%[4]s:%[6]d"}
relay: {strategy: %[7]s}
limits: {maxConns: 50000, maxConnsPerSource: 50000}
`, data, edgeUser, bulkPort, originIP, echoPort, testnet.OriginEcho, strategy)
}

// The line the edge logs at start with the relay strategy it runs
// (strategy=...), and what the strategy is in it.
var (
	relayStrategyLine = "relay: strategy for TCP-to-TCP paths"
	relayStrategyRE   = regexp.MustCompile(`\bstrategy="?([A-Za-z]+)`)
)

// relayStrategy finds the edge's strategy line in its output: the
// strategy and the whole line, or "" if it has not logged it.
func relayStrategy(output string) (strategy, line string) {
	for l := range strings.SplitSeq(output, "\n") {
		i := strings.Index(l, relayStrategyLine)
		if i < 0 {
			continue
		}
		if m := relayStrategyRE.FindStringSubmatch(l[i+len(relayStrategyLine):]); m != nil {
			return strings.ToLower(m[1]), strings.TrimSpace(l)
		}
	}
	return "", ""
}

// startDirect runs the edge as a direct L4 proxy with strategy forced,
// pinned to the SUT CPUs, and checks from its log that it relays with
// that strategy. The sockmap strategy may not work on this kernel, or
// not exist in the edge yet: when the edge refuses it at start (its
// error names sockmap) or runs another strategy instead, the scenario is
// not available here ([ErrNotAvailable]), not failed.
func startDirect(strategy string) func(ctx context.Context, env *Env) (*Rig, error) {
	return func(ctx context.Context, env *Env) (*Rig, error) {
		r, err := newRig(ctx, env, RoutedLine())
		if err != nil {
			return nil, err
		}
		fail := func(err error) (*Rig, error) {
			r.Close()
			return nil, fmt.Errorf("edge direct (%s): %w", strategy, err)
		}
		dir, err := tempDir(r)
		if err != nil {
			return fail(err)
		}
		bin, err := testnet.BuildBinary(testnet.EdgePkg)
		if err != nil {
			return fail(err)
		}
		cfg := filepath.Join(dir, "edge.yml")
		if err := os.WriteFile(cfg, []byte(directEdgeYAML(filepath.Join(dir, "edge-data"), strategy)), 0o644); err != nil {
			return fail(err)
		}
		edge := r.Net.Node("edge")
		p, err := env.StartSUT(edge, bin, "--config", cfg, "serve")
		if err != nil {
			return fail(err)
		}
		optional := strategy == "sockmap"
		for _, port := range []int{bulkPort, echoPort} {
			if err := waitListen(ctx, edge, "tcp", port, p); err != nil {
				if optional && exited(p) && strings.Contains(strings.ToLower(p.Output()), "sockmap") {
					err = fmt.Errorf("%w: the edge refused the sockmap strategy: %s", ErrNotAvailable, lastLineWith(p.Output(), "sockmap"))
				}
				return fail(err)
			}
		}
		// The edge logs its strategy before it listens; give a slow log
		// pipe a moment.
		var got, line string
		for deadline := time.Now().Add(5 * time.Second); ; {
			if got, line = relayStrategy(p.Output()); got != "" || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		switch {
		case got == "":
			return fail(fmt.Errorf("the edge did not log %q with strategy=", relayStrategyLine))
		case got != strategy && optional:
			return fail(fmt.Errorf("%w: the edge relays with %s instead: %s", ErrNotAvailable, got, line))
		case got != strategy:
			return fail(fmt.Errorf("the edge relays with %s, not the %s its configuration forces: %s", got, strategy, line))
		}
		env.Logf("edge direct: %s", line)
		pid := p.Cmd.Process.Pid
		r.Measured = []int{pid}
		r.Roles = map[int]string{pid: "edge"}
		r.Addr["bulk"] = hostPort(edgeUser, bulkPort)
		r.Addr["echo"] = hostPort(edgeUser, echoPort)
		return r, nil
	}
}

// exited reports whether p has exited.
func exited(p *testnet.Proc) bool {
	select {
	case <-p.Done():
		return true
	default:
		return false
	}
}

// lastLineWith is the last line of s that contains word (in any case).
func lastLineWith(s, word string) string {
	var last string
	for l := range strings.SplitSeq(s, "\n") {
		if strings.Contains(strings.ToLower(l), word) {
			last = strings.TrimSpace(l)
		}
	}
	return last
}
