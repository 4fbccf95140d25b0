package main

import (
	"fmt"
	"io"
)

// summaryTable writes issue 8's one table: every path against the same
// direct baseline, one column each, from the parts that ran (a dash where
// a part did not run or does not apply).
func (r *Report) summaryTable(w io.Writer) {
	l, t, s, n, g := r.Latency, r.Throughput, r.SSE, r.Nginx, r.Gateway
	if l == nil || t == nil {
		return
	}
	dash := "—"
	col := func(ok bool, format string, a ...any) string {
		if !ok {
			return dash
		}
		return fmt.Sprintf(format, a...)
	}
	hasN, hasG, hasS := n != nil, g != nil, s != nil
	fmt.Fprintln(w, "Summary: the same 4 KB chat request direct to the plaintext sandbox, through nginx (pass-through), through the proxy (encrypted sandbox); the gateway's code completion over calling the proxy directly.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| measurement | direct | nginx | proxy | gateway (over the proxy) | targets |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	row := func(name, direct, ng, px, gw, target string) {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", name, direct, ng, px, gw, target)
	}
	row("added latency p50, c=1", fmt.Sprintf("%.3f ms (baseline)", l.DirectP50), col(hasN, "+%.3f ms", n.added(50)), fmt.Sprintf("+%.3f ms", l.AddedP50),
		col(hasG, "+%.3f ms", g.added(50)), fmt.Sprintf("proxy ≤ %.1f ms %s; gateway ≤ %.1f ms %s", targetAddedP50, passMiss(l.AddedP50 <= targetAddedP50), targetGatewayAddedP50, col(hasG, "%s", passMiss(hasG && g.added(50) <= targetGatewayAddedP50))))
	row("added latency p90", fmt.Sprintf("%.3f ms", l.DirectP90), col(hasN, "+%.3f ms", n.added(90)), fmt.Sprintf("+%.3f ms", l.AddedP90), col(hasG, "+%.3f ms", g.added(90)), "")
	row("added latency p99", fmt.Sprintf("%.3f ms", l.DirectP99), col(hasN, "+%.3f ms", n.added(99)), fmt.Sprintf("+%.3f ms", l.AddedP99), col(hasG, "+%.3f ms", g.added(99)),
		fmt.Sprintf("proxy ≤ %.1f ms %s", targetAddedP99, passMiss(l.AddedP99 <= targetAddedP99)))
	row("added latency, median of paired differences", "", col(hasN, "+%.3f ms", n.paired()), fmt.Sprintf("+%.3f ms", l.PairedMedian), col(hasG, "+%.3f ms", g.paired()), "")
	row(fmt.Sprintf("requests/s at c=%d", t.Concurrency), fmt.Sprintf("%.0f", t.Direct.PerSecond), col(hasN, "%.0f", n.rate()), fmt.Sprintf("%.0f (%.0f%%)", t.Proxy.PerSecond, 100*t.Ratio),
		col(hasG, "%.0f (%.0f%% of its direct %.0f)", g.rate(), 100*g.ratio(), g.directRate()), fmt.Sprintf("proxy ≥ %.0f%% of direct %s", 100*targetRatio, passMiss(t.Ratio >= targetRatio)))
	if hasS {
		row(fmt.Sprintf("SSE chunks/s, %d streams", s.Streams), fmt.Sprintf("%.0f", s.DirectRate), col(hasN, "%.0f", n.sse()), fmt.Sprintf("%.0f", s.ProxyRate), dash,
			fmt.Sprintf("proxy ≥ %d %s", targetChunks, passMiss(s.ProxyRate >= targetChunks)))
	}
	cpu := dash
	if r.CPU != nil {
		cpu = fmt.Sprintf("%.0f µs (`serve` child, c=%d)", r.CPU.MicrosPerReq, r.CPU.Concurrency)
	}
	row("CPU per request of the hop", dash, col(hasN, "%.0f µs (nginx processes, c=%d)", n.cpuPerReq(), t.Concurrency), cpu,
		col(hasG, "+%.0f µs (process CPU, in process, c=%d)", g.addedCPU(), g.concurrency()), "reported")
	if m := r.Memory; m != nil {
		for _, st := range m.Streams {
			target := ""
			if st.Open == targetStreamsOpen {
				target = fmt.Sprintf("≤ %d MB %s", targetStreamsMiB, passMiss(st.RSSMiB*1.048576 <= targetStreamsMiB))
			}
			row(fmt.Sprintf("RSS, %d open streams", st.Open), dash, dash, fmt.Sprintf("%.1f MiB (idle %.1f)", st.RSSMiB, m.IdleMiB), dash, target)
		}
	}
	fmt.Fprintln(w)
}

// Accessors that tolerate a part that did not run (nil receiver).

func (n *NginxResult) added(p int) float64 {
	if n == nil {
		return 0
	}
	return map[int]float64{50: n.AddedP50, 90: n.AddedP90, 99: n.AddedP99}[p]
}

func (n *NginxResult) paired() float64 {
	if n == nil {
		return 0
	}
	return n.PairedMedian
}

func (n *NginxResult) rate() float64 {
	if n == nil {
		return 0
	}
	return n.Throughput.PerSecond
}

func (n *NginxResult) sse() float64 {
	if n == nil {
		return 0
	}
	return n.SSERate
}

func (n *NginxResult) cpuPerReq() float64 {
	if n == nil {
		return 0
	}
	return n.CPUPerReqUS
}

func (g *GatewayResult) added(p int) float64 {
	if g == nil {
		return 0
	}
	return map[int]float64{50: g.Latency.AddedP50, 90: g.Latency.AddedP90, 99: g.Latency.AddedP99}[p]
}

func (g *GatewayResult) paired() float64 {
	if g == nil {
		return 0
	}
	return g.Latency.PairedMedian
}

func (g *GatewayResult) rate() float64 {
	if g == nil {
		return 0
	}
	return g.Throughput.Gateway.PerSecond
}

func (g *GatewayResult) directRate() float64 {
	if g == nil {
		return 0
	}
	return g.Throughput.Direct.PerSecond
}

func (g *GatewayResult) ratio() float64 {
	if g == nil {
		return 0
	}
	return g.Throughput.Ratio
}

func (g *GatewayResult) addedCPU() float64 {
	if g == nil {
		return 0
	}
	return g.Throughput.Gateway.cpuPerRequest() - g.Throughput.Direct.cpuPerRequest()
}

func (g *GatewayResult) concurrency() int {
	if g == nil {
		return 0
	}
	return g.Throughput.Concurrency
}
