package bench

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// NetCounters are counters of one process and the network namespace it
// is in: "Udp.OutDatagrams" and the like from /proc/PID/net/snmp,
// "Udp6.OutDatagrams" from snmp6, "dev.IFACE.tx_packets" (rx_, _bytes)
// from /proc/PID/net/dev, and the process's context switches and time
// spent waiting for a CPU, summed over its threads ("sched.voluntary",
// "sched.involuntary", "sched.wait_ns").
type NetCounters map[string]uint64

// ReadNetCounters reads the counters of pid and its network namespace.
func ReadNetCounters(pid int) (NetCounters, error) {
	c := NetCounters{}
	for _, f := range []struct {
		name  string
		parse func([]byte, NetCounters) error
	}{{"net/snmp", parseSNMP}, {"net/snmp6", parseSNMP6}, {"net/dev", parseNetDev}} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, f.name))
		if err != nil {
			return nil, err
		}
		if err := f.parse(b, c); err != nil {
			return nil, err
		}
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		if st, err := ParseStat(b); err == nil {
			c["cpu.user_ms"] = (st.UTime + st.CUTime) * 1000 / ClockTicks
			c["cpu.sys_ms"] = (st.STime + st.CSTime) * 1000 / ClockTicks
		}
	}
	return c, readSched(pid, c)
}

// readSched adds the context switches (from each thread's status) and
// the run-queue wait (schedstat's second field) of pid's threads.
func readSched(pid int, c NetCounters) error {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, t := range tasks {
		// A thread may exit between the listing and the reads.
		if b, err := os.ReadFile(dir + "/" + t.Name() + "/status"); err == nil {
			for l := range strings.SplitSeq(string(b), "\n") {
				k, v, _ := strings.Cut(l, ":")
				var key string
				switch k {
				case "voluntary_ctxt_switches":
					key = "sched.voluntary"
				case "nonvoluntary_ctxt_switches":
					key = "sched.involuntary"
				default:
					continue
				}
				if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
					c[key] += n
				}
			}
		}
		if b, err := os.ReadFile(dir + "/" + t.Name() + "/schedstat"); err == nil {
			if f := strings.Fields(string(b)); len(f) >= 2 {
				if n, err := strconv.ParseUint(f[1], 10, 64); err == nil {
					c["sched.wait_ns"] += n
				}
			}
		}
	}
	return nil
}

// parseSNMP6 reads /proc/net/snmp6's "Udp6InDatagrams value" lines; the
// UDP ones are kept, as "Udp6.InDatagrams".
func parseSNMP6(b []byte, c NetCounters) error {
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) != 2 {
			continue
		}
		name, ok := strings.CutPrefix(f[0], "Udp6")
		if !ok {
			continue
		}
		v, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return fmt.Errorf("snmp6: %s: %w", f[0], err)
		}
		c["Udp6."+name] = v
	}
	return nil
}

// parseSNMP reads /proc/net/snmp's pairs of lines: "Proto: Name ..."
// then "Proto: value ...". Negative values (Tcp MaxConn) are left out.
func parseSNMP(b []byte, c NetCounters) error {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for i := 0; i+1 < len(lines); i += 2 {
		names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) != len(values) || len(names) == 0 || names[0] != values[0] {
			return fmt.Errorf("snmp: lines %d and %d do not pair", i+1, i+2)
		}
		proto := strings.TrimSuffix(names[0], ":")
		for j := 1; j < len(names); j++ {
			if v, err := strconv.ParseUint(values[j], 10, 64); err == nil {
				c[proto+"."+names[j]] = v
			}
		}
	}
	return nil
}

// parseNetDev reads /proc/net/dev: two header lines, then per interface
// 8 receive and 8 transmit columns; bytes and packets are kept.
func parseNetDev(b []byte, c NetCounters) error {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	for _, l := range lines[min(2, len(lines)):] {
		name, rest, ok := bytes.Cut(l, []byte(":"))
		if !ok {
			return fmt.Errorf("net/dev: no interface in %q", truncate(l))
		}
		f := strings.Fields(string(rest))
		if len(f) < 16 {
			return fmt.Errorf("net/dev: %d columns, want 16", len(f))
		}
		dev := "dev." + strings.TrimSpace(string(name)) + "."
		for k, col := range map[string]int{"rx_bytes": 0, "rx_packets": 1, "tx_bytes": 8, "tx_packets": 9} {
			v, err := strconv.ParseUint(f[col], 10, 64)
			if err != nil {
				return fmt.Errorf("net/dev: %s%s: %w", dev, k, err)
			}
			c[dev+k] = v
		}
	}
	return nil
}

// Since returns the growth of every counter since before (counters that
// shrank, a namespace's counters being reset, count as 0).
func (c NetCounters) Since(before NetCounters) NetCounters {
	d := NetCounters{}
	for k, v := range c {
		if v > before[k] {
			d[k] = v - before[k]
		}
	}
	return d
}

// Summary is one line of what moved in a run: the process's context
// switches and run-queue wait, UDP datagrams (IPv4 and IPv6) in and out
// with the receive- and send-buffer drops, TCP segments and retransmits,
// and per interface the packets each way with their mean size (above the
// link MTU means the stack handed GSO/GRO batches through).
func (c NetCounters) Summary() string {
	var parts []string
	add := func(format string, args ...any) { parts = append(parts, fmt.Sprintf(format, args...)) }
	if c["cpu.user_ms"]+c["cpu.sys_ms"] > 0 {
		add("cpu user %d ms sys %d ms", c["cpu.user_ms"], c["cpu.sys_ms"])
	}
	if c["sched.voluntary"]+c["sched.involuntary"] > 0 {
		add("switches %d voluntary %d involuntary, runq wait %d ms", c["sched.voluntary"], c["sched.involuntary"], c["sched.wait_ns"]/1e6)
	}
	udp := func(k string) uint64 { return c["Udp."+k] + c["Udp6."+k] }
	if udp("InDatagrams")+udp("OutDatagrams") > 0 {
		add("udp in %d out %d rcvbuf-drop %d sndbuf-drop %d", udp("InDatagrams"), udp("OutDatagrams"),
			udp("RcvbufErrors"), udp("SndbufErrors"))
	}
	if c["Tcp.InSegs"]+c["Tcp.OutSegs"] > 0 {
		add("tcp in %d out %d retrans %d", c["Tcp.InSegs"], c["Tcp.OutSegs"], c["Tcp.RetransSegs"])
	}
	var devs []string
	for k := range c {
		d, ok := strings.CutPrefix(k, "dev.")
		if !ok {
			continue
		}
		if name := d[:strings.LastIndexByte(d, '.')]; name != "lo" && !slices.Contains(devs, name) {
			devs = append(devs, name)
		}
	}
	slices.Sort(devs)
	mean := func(b, p uint64) uint64 {
		if p == 0 {
			return 0
		}
		return b / p
	}
	for _, d := range devs {
		tb, tp := c["dev."+d+".tx_bytes"], c["dev."+d+".tx_packets"]
		rb, rp := c["dev."+d+".rx_bytes"], c["dev."+d+".rx_packets"]
		add("%s tx %d pkts (%d B) rx %d pkts (%d B)", d, tp, mean(tb, tp), rp, mean(rb, rp))
	}
	if len(parts) == 0 {
		return "nothing moved"
	}
	return strings.Join(parts, "; ")
}
