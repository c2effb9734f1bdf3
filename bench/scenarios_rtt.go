package bench

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// The first-byte area measures issue 4's goal "a stream opened on a warm
// tunnel costs no extra round trip beyond the user's own connect" with
// BenchmarkFirstByte (l4proxy/edge/rtt_test.go): in one process on
// loopback, the connector reaches the edge through testnet/delay, a relay
// that holds every tunnel packet 50 ms each way (the kernel has no netem),
// so one tunnel round trip is R = 100 ms while users and origins are ~0 RTT
// away. Its figures are in R; the peer is one echo through the same relay
// on a warm connection (the floor), so the ratio counts round trips.

var firstByteArea = Area{Key: "l4-firstbyte", Only: "/firstbyte$", Title: "L4 tunnel: round trips of a new connection on a warm tunnel",
	Compare: []string{"tcp", "http", "tls", "udp"},
	Intro: "A fresh user connection through a warm tunnel whose round trip is R = 100 ms (`go test -bench BenchmarkFirstByte ./l4proxy/edge/`: " +
		"edge, connector, user and origins in one process on loopback; the connector reaches the edge through a relay holding every packet 50 ms each way). " +
		"Median time until the user has its first answer, in R: 1 is the floor (the bytes must reach the connector and come back), 2 would be an extra round trip. " +
		"The floor row is one echo on a warm connection through the same relay."}

var firstByteMetrics = []Metric{
	{Name: "tcp", Unit: "R", Lower: true, Note: "TCP port binding: connect + 4-byte request + first byte of the echo"},
	{Name: "http", Unit: "R", Lower: true, Note: "HTTP listener: connect + GET routed by Host + first byte of the response"},
	{Name: "tls", Unit: "R", Lower: true, Note: "TLS listener: connect + the user's TLS 1.3 handshake with the origin, routed by SNI (passed through)"},
	{Name: "tls_request", Unit: "R", Lower: true, Note: "TLS listener: handshake + GET + first byte; the handshake is a round trip of its own, so 2 is the floor"},
	{Name: "udp", Unit: "R", Lower: true, Note: "UDP port binding: first datagram of a new flow + its answer"},
}

const setupFirstByte = "in process on loopback (`go test -bench`, all CPUs, not pinned): edge, connector, users and origins; testnet/delay between connector and edge (UDP for QUIC, TCP for HTTP/2), 50 ms each way"

// firstByteScenarios are the two tunnels and the floor.
func firstByteScenarios() []Scenario {
	goals := []Goal{
		{Peer: "relay/firstbyte", Metric: "tcp", Op: "<=", Ratio: 1.5},
		{Peer: "relay/firstbyte", Metric: "udp", Op: "<=", Ratio: 1.5},
	}
	return []Scenario{
		{Name: "tunnel-quic/firstbyte", Area: firstByteArea.Key, Label: "onramp tunnel, QUIC", Onramp: true, Setup: setupFirstByte,
			Goals: goals, Metrics: firstByteMetrics, Estimate: estFirstByte, Start: startNothing, Run: runFirstByte("quic")},
		{Name: "tunnel-http2/firstbyte", Area: firstByteArea.Key, Label: "onramp tunnel, HTTP/2", Onramp: true, Setup: setupFirstByte,
			Goals: goals, Metrics: firstByteMetrics, Estimate: estFirstByte, Start: startNothing, Run: runFirstByte("http2")},
		{Name: "relay/firstbyte", Area: firstByteArea.Key, Label: "one round trip through the relay (floor)",
			PeerOf: []string{"tunnel-quic/firstbyte", "tunnel-http2/firstbyte"},
			Setup:  "in process on loopback: a 4-byte echo on a warm TCP connection (tcp, http, tls) or UDP socket (udp) through testnet/delay, 50 ms each way",
			Metrics: []Metric{
				{Name: "tcp", Unit: "R", Lower: true, Note: "echo on a warm TCP connection through the TCP relay (also the floor of http and tls)"},
				{Name: "http", Unit: "R", Lower: true, Note: "the tcp figure"},
				{Name: "tls", Unit: "R", Lower: true, Note: "the tcp figure"},
				{Name: "udp", Unit: "R", Lower: true, Note: "echo through the UDP relay"},
			},
			Estimate: estFirstByte, Start: startNothing, Run: runFirstByte("floor")},
	}
}

// firstByteConns is how many connections one run times per path.
func firstByteConns(env *Env) int {
	if env.Quick {
		return 7
	}
	return 15
}

func estFirstByte(env *Env) float64 {
	// Per run: go test starts (~3.5 s), then 6 connection times (5 paths,
	// tls_request twice as long) of ~0.1 s for each connection and warm-up.
	return 3 + float64(env.Reps)*(3.5+0.105*6*float64(firstByteConns(env)+2))
}

// runFirstByte runs BenchmarkFirstByte/<sub> once and returns its
// tunnel-RTTs/op by path.
func runFirstByte(sub string) func(context.Context, *Env, *Rig) (Sample, error) {
	return func(ctx context.Context, env *Env, _ *Rig) (Sample, error) {
		args := []string{"test", "-run", "^$", "-count", "1", "-bench", "^BenchmarkFirstByte$/^" + sub + "$/",
			"-benchtime", fmt.Sprintf("%dx", firstByteConns(env)), "./l4proxy/edge/"}
		name, full := "go", args
		if env.AllCPUs != "" {
			name, full = "taskset", append([]string{"-c", env.AllCPUs, "go"}, args...)
		}
		cmd := exec.CommandContext(ctx, name, full...)
		cmd.Dir = env.ModRoot
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		env.Logf("$ go %s\n%s%s", strings.Join(args, " "), truncateTail(string(out), 4000), stderr.String())
		if err != nil {
			return Sample{}, fmt.Errorf("go test -bench BenchmarkFirstByte/%s: %w", sub, err)
		}
		v, err := ParseFirstByte(string(out), sub)
		if err != nil {
			return Sample{}, err
		}
		if sub == "floor" {
			v["http"], v["tls"] = v["tcp"], v["tcp"]
		}
		return Sample{Values: v}, nil
	}
}

// ParseFirstByte returns the tunnel-RTTs/op of each
// BenchmarkFirstByte/<sub>/<path> line of go test -bench output, by path
// ("tls-request" as "tls_request"). It fails if there is none.
func ParseFirstByte(out, sub string) (map[string]float64, error) {
	v := map[string]float64{}
	prefix := "BenchmarkFirstByte/" + sub + "/"
	for line := range strings.SplitSeq(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], prefix) {
			continue
		}
		path := strings.TrimPrefix(f[0], prefix)
		if i := strings.LastIndexByte(path, '-'); i > 0 {
			if _, err := strconv.Atoi(path[i+1:]); err == nil {
				path = path[:i] // the -GOMAXPROCS suffix
			}
		}
		for i := 2; i+1 < len(f); i += 2 {
			if f[i+1] != "tunnel-RTTs/op" {
				continue
			}
			x, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("BenchmarkFirstByte/%s/%s: tunnel-RTTs/op %q: %v", sub, path, f[i], err)
			}
			v[strings.ReplaceAll(path, "-", "_")] = x
		}
	}
	if len(v) == 0 {
		return nil, fmt.Errorf("no BenchmarkFirstByte/%s result with tunnel-RTTs/op in the go test output", sub)
	}
	return v, nil
}
