package ui

import (
	"fmt"
	"math"
	"sort"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// TrafficPart is one listener's traffic since start, per route.
type TrafficPart struct {
	StreamsInFlight float64 `json:"streams_in_flight"`
	// LatencyBuckets and OverheadBuckets are the histograms' upper bounds
	// in seconds; each histogram has one more count, for +Inf.
	LatencyBuckets  []float64      `json:"latency_buckets"`
	OverheadBuckets []float64      `json:"overhead_buckets,omitempty"`
	Routes          []RouteTraffic `json:"routes"`
}

// RouteTraffic is the traffic of one route.
type RouteTraffic struct {
	Route        string            `json:"route"`
	Requests     uint64            `json:"requests"`
	ClientErrors uint64            `json:"client_errors"` // 4xx
	ServerErrors uint64            `json:"server_errors"` // 5xx
	ByCode       map[string]uint64 `json:"by_code"`
	// Prompts counts gateway requests per prompt id (/v1/prompts routes).
	Prompts  map[string]uint64 `json:"prompts,omitempty"`
	Streams  float64           `json:"streams_in_flight"`
	Latency  Histogram         `json:"latency"`
	Overhead *Histogram        `json:"overhead,omitempty"`
}

// Histogram is a distribution with per-bucket (not cumulative) counts.
type Histogram struct {
	Count      uint64   `json:"count"`
	SumSeconds float64  `json:"sum_seconds"`
	Counts     []uint64 `json:"counts"`
	// P50 and P95 are bucket upper bounds (seconds) the quantile falls in;
	// 0 without observations, +Inf is reported as the largest bound.
	P50 float64 `json:"p50_seconds"`
	P95 float64 `json:"p95_seconds"`
}

// gatherTraffic reads the request metrics back from the registry, so the
// traffic view and /metrics show the same numbers.
func gatherTraffic(g prometheus.Gatherer) (*Traffic, error) {
	fams, err := g.Gather()
	if err != nil {
		return nil, fmt.Errorf("gather metrics: %w", err)
	}
	byName := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		byName[f.GetName()] = f
	}
	t := &Traffic{
		Proxy:   part(byName, mProxyRequests, mProxyDuration, mProxyOverhead, mProxyStreams),
		Gateway: part(byName, mGatewayRequests, mGatewayDuration, "", mGatewayStreams),
	}
	t.Proxy.LatencyBuckets, t.Proxy.OverheadBuckets = latencyBuckets, overheadBuckets
	t.Gateway.LatencyBuckets = latencyBuckets
	return t, nil
}

func part(fams map[string]*dto.MetricFamily, requests, duration, overhead, streams string) TrafficPart {
	routes := map[string]*RouteTraffic{}
	get := func(name string) *RouteTraffic {
		r := routes[name]
		if r == nil {
			r = &RouteTraffic{Route: name, ByCode: map[string]uint64{}, Latency: emptyHist(latencyBuckets)}
			if overhead != "" {
				h := emptyHist(overheadBuckets)
				r.Overhead = &h
			}
			routes[name] = r
		}
		return r
	}
	var p TrafficPart
	if f := fams[requests]; f != nil {
		for _, m := range f.GetMetric() {
			l := labels(m)
			r := get(l["route"])
			n := uint64(m.GetCounter().GetValue())
			r.Requests += n
			r.ByCode[l["code"]] += n
			switch c := l["code"]; {
			case len(c) == 3 && c[0] == '4':
				r.ClientErrors += n
			case len(c) == 3 && c[0] == '5':
				r.ServerErrors += n
			}
			if pr := l["prompt"]; pr != "" {
				if r.Prompts == nil {
					r.Prompts = map[string]uint64{}
				}
				r.Prompts[pr] += n
			}
		}
	}
	if f := fams[duration]; f != nil {
		for _, m := range f.GetMetric() {
			get(labels(m)["route"]).Latency = hist(m.GetHistogram(), latencyBuckets)
		}
	}
	if f := fams[overhead]; overhead != "" && f != nil {
		for _, m := range f.GetMetric() {
			h := hist(m.GetHistogram(), overheadBuckets)
			get(labels(m)["route"]).Overhead = &h
		}
	}
	if f := fams[streams]; f != nil {
		for _, m := range f.GetMetric() {
			v := m.GetGauge().GetValue()
			get(labels(m)["route"]).Streams = v
			p.StreamsInFlight += v
		}
	}
	p.Routes = make([]RouteTraffic, 0, len(routes))
	for _, r := range routes {
		p.Routes = append(p.Routes, *r)
	}
	sort.Slice(p.Routes, func(i, j int) bool { return p.Routes[i].Route < p.Routes[j].Route })
	return p
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

func emptyHist(bounds []float64) Histogram {
	return Histogram{Counts: make([]uint64, len(bounds)+1)}
}

// hist turns Prometheus' cumulative buckets into per-bucket counts.
func hist(h *dto.Histogram, bounds []float64) Histogram {
	out := emptyHist(bounds)
	out.Count, out.SumSeconds = h.GetSampleCount(), h.GetSampleSum()
	var prev uint64
	for i, b := range h.GetBucket() {
		if i >= len(bounds) {
			break
		}
		c := b.GetCumulativeCount()
		out.Counts[i] = c - prev
		prev = c
	}
	out.Counts[len(bounds)] = out.Count - prev
	out.P50, out.P95 = quantile(out, bounds, 0.5), quantile(out, bounds, 0.95)
	return out
}

// quantile is the upper bound of the bucket holding quantile q.
func quantile(h Histogram, bounds []float64, q float64) float64 {
	if h.Count == 0 {
		return 0
	}
	want := uint64(math.Ceil(q * float64(h.Count)))
	var cum uint64
	for i, c := range h.Counts {
		cum += c
		if cum >= want {
			if i < len(bounds) {
				return bounds[i]
			}
			break
		}
	}
	return bounds[len(bounds)-1]
}
