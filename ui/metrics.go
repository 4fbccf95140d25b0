package ui

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Histogram bucket upper bounds, in seconds. Latency spans a cached
// completion to a long chat stream; overhead is the proxy's own work.
var (
	latencyBuckets  = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120}
	overheadBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1}
)

// Metric names the traffic view reads back from the registry.
const (
	mProxyRequests   = "duo_proxy_requests_total"
	mProxyDuration   = "duo_proxy_request_duration_seconds"
	mProxyOverhead   = "duo_proxy_overhead_seconds"
	mProxyStreams    = "duo_proxy_streams_in_flight"
	mGatewayRequests = "duo_gateway_requests_total"
	mGatewayDuration = "duo_gateway_request_duration_seconds"
	mGatewayStreams  = "duo_gateway_streams_in_flight"
)

// Traffic holds the per-route instruments of the proxy and the gateway.
// Its ProxyMetrics and GatewayMetrics plug into proxy.Options.Metrics and
// gateway.Options.Metrics.
type Traffic struct {
	Proxy   TrafficPart `json:"proxy"`
	Gateway TrafficPart `json:"gateway"`
}

// Instruments are the registered request metrics.
type Instruments struct {
	proxyRequests   *prometheus.CounterVec
	proxyDuration   *prometheus.HistogramVec
	proxyOverhead   *prometheus.HistogramVec
	proxyStreams    *prometheus.GaugeVec
	gatewayRequests *prometheus.CounterVec
	gatewayDuration *prometheus.HistogramVec
	gatewayStreams  *prometheus.GaugeVec
}

// NewInstruments registers the request metrics with reg.
func NewInstruments(reg prometheus.Registerer) (*Instruments, error) {
	in := &Instruments{
		proxyRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: mProxyRequests,
			Help: "Requests answered by the attesting proxy, by route template and HTTP status."}, []string{"route", "code"}),
		proxyDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: mProxyDuration,
			Help: "Time until the proxy's answer was complete (streams: until their end), by route.", Buckets: latencyBuckets}, []string{"route"}),
		proxyOverhead: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: mProxyOverhead,
			Help: "Time the proxy spent itself (parsing, encryption, decryption) before the answer started, not waiting for the backend, by route.", Buckets: overheadBuckets}, []string{"route"}),
		proxyStreams: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: mProxyStreams,
			Help: "Event streams the proxy is relaying now, by route."}, []string{"route"}),
		gatewayRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: mGatewayRequests,
			Help: "Requests answered by the GitLab AI gateway, by route, prompt id (/v1/prompts) and HTTP status."}, []string{"route", "prompt", "code"}),
		gatewayDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: mGatewayDuration,
			Help: "Time until the gateway's answer was complete (streams: until their end), by route.", Buckets: latencyBuckets}, []string{"route"}),
		gatewayStreams: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: mGatewayStreams,
			Help: "Streamed answers the gateway is writing now, by route."}, []string{"route"}),
	}
	for _, c := range []prometheus.Collector{in.proxyRequests, in.proxyDuration, in.proxyOverhead, in.proxyStreams,
		in.gatewayRequests, in.gatewayDuration, in.gatewayStreams} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return in, nil
}

// ProxyMetrics adapts Instruments to proxy.Metrics.
type ProxyMetrics struct{ in *Instruments }

// Proxy returns the proxy's observer.
func (in *Instruments) Proxy() ProxyMetrics { return ProxyMetrics{in} }

// ObserveRequest implements proxy.Metrics.
func (p ProxyMetrics) ObserveRequest(route string, status int, total, overhead time.Duration) {
	p.in.proxyRequests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	p.in.proxyDuration.WithLabelValues(route).Observe(total.Seconds())
	p.in.proxyOverhead.WithLabelValues(route).Observe(overhead.Seconds())
}

// StreamStarted implements proxy.Metrics.
func (p ProxyMetrics) StreamStarted(route string) { p.in.proxyStreams.WithLabelValues(route).Inc() }

// StreamEnded implements proxy.Metrics.
func (p ProxyMetrics) StreamEnded(route string) { p.in.proxyStreams.WithLabelValues(route).Dec() }

// GatewayMetrics adapts Instruments to gateway.Metrics.
type GatewayMetrics struct{ in *Instruments }

// Gateway returns the gateway's observer.
func (in *Instruments) Gateway() GatewayMetrics { return GatewayMetrics{in} }

// ObserveRequest implements gateway.Metrics.
func (g GatewayMetrics) ObserveRequest(route, prompt string, status int, total time.Duration) {
	g.in.gatewayRequests.WithLabelValues(route, prompt, strconv.Itoa(status)).Inc()
	g.in.gatewayDuration.WithLabelValues(route).Observe(total.Seconds())
}

// StreamStarted implements gateway.Metrics.
func (g GatewayMetrics) StreamStarted(route string) { g.in.gatewayStreams.WithLabelValues(route).Inc() }

// StreamEnded implements gateway.Metrics.
func (g GatewayMetrics) StreamEnded(route string) { g.in.gatewayStreams.WithLabelValues(route).Dec() }
