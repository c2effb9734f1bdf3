package bench

import (
	"os"
	"strings"
	"testing"
)

const snmpBefore = `Ip: Forwarding DefaultTTL InReceives
Ip: 2 64 100
Tcp: RtoAlgorithm MaxConn InSegs OutSegs RetransSegs
Tcp: 1 -1 1000 2000 5
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors
Udp: 10 0 0 20 0 0
`

const snmpAfter = `Ip: Forwarding DefaultTTL InReceives
Ip: 2 64 300
Tcp: RtoAlgorithm MaxConn InSegs OutSegs RetransSegs
Tcp: 1 -1 1500 2900 7
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors
Udp: 4010 0 3 1020 3 0
`

const devBefore = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 500 5    0    0    0     0          0         0 500 5    0    0    0     0       0          0
  eth0: 1000 10    0    0    0     0          0         0 2000 20    0    0    0     0       0          0
`

const devAfter = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 900 9    0    0    0     0          0         0 900 9    0    0    0     0       0          0
  eth0: 1001000 1010    0    0    0     0          0         0 64002000 1020    0    0    0     0       0          0
`

func counters(t *testing.T, snmp, dev string) NetCounters {
	t.Helper()
	c := NetCounters{}
	if err := parseSNMP([]byte(snmp), c); err != nil {
		t.Fatal(err)
	}
	if err := parseNetDev([]byte(dev), c); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestParseSNMP6(t *testing.T) {
	c := NetCounters{}
	if err := parseSNMP6([]byte("Ip6InReceives  \t5\nUdp6InDatagrams \t 7\nUdp6RcvbufErrors\t2\n"), c); err != nil {
		t.Fatal(err)
	}
	if len(c) != 2 || c["Udp6.InDatagrams"] != 7 || c["Udp6.RcvbufErrors"] != 2 {
		t.Errorf("got %v", c)
	}
	// IPv4 and IPv6 datagrams add up in the summary.
	c["Udp.InDatagrams"], c["Udp.OutDatagrams"] = 3, 1
	if s := c.Summary(); s != "udp in 10 out 1 rcvbuf-drop 2 sndbuf-drop 0" {
		t.Errorf("summary %q", s)
	}
}

func TestNetCountersSummary(t *testing.T) {
	before, after := counters(t, snmpBefore, devBefore), counters(t, snmpAfter, devAfter)
	if _, ok := before["Tcp.MaxConn"]; ok {
		t.Error("Tcp.MaxConn (-1) was kept")
	}
	d := after.Since(before)
	if d["Udp.InDatagrams"] != 4000 || d["Udp.RcvbufErrors"] != 3 || d["dev.eth0.tx_packets"] != 1000 {
		t.Fatalf("deltas: %v", d)
	}
	got := d.Summary()
	want := "udp in 4000 out 1000 rcvbuf-drop 3 sndbuf-drop 0; tcp in 500 out 900 retrans 2; eth0 tx 1000 pkts (64000 B) rx 1000 pkts (1000 B)"
	if got != want {
		t.Errorf("summary\n got %s\nwant %s", got, want)
	}
	if s := before.Since(before).Summary(); s != "nothing moved" {
		t.Errorf("no change: %q", s)
	}
}

func TestNetCountersMalformed(t *testing.T) {
	if err := parseSNMP([]byte("Udp: InDatagrams NoPorts\nTcp: 1 2\n"), NetCounters{}); err == nil {
		t.Error("unpaired snmp lines accepted")
	}
	if err := parseNetDev([]byte("h1\nh2\n  eth0: 1 2 3\n"), NetCounters{}); err == nil {
		t.Error("short net/dev line accepted")
	}
}

// TestReadNetCounters reads this process's own namespace.
func TestReadNetCounters(t *testing.T) {
	c, err := ReadNetCounters(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c["Udp.OutDatagrams"]; !ok {
		t.Errorf("no Udp.OutDatagrams in %d counters", len(c))
	}
	if c["sched.voluntary"]+c["sched.involuntary"] == 0 {
		t.Error("a Go test process that never switched")
	}
	for k := range c {
		if strings.HasPrefix(k, "dev.lo.") {
			return
		}
	}
	t.Error("no counters of lo")
}
