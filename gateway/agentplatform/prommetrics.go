package agentplatform

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// PrometheusMetrics implements Metrics with Prometheus collectors named
// duo_agent_platform_*.
type PrometheusMetrics struct {
	active    prometheus.Gauge
	finished  *prometheus.CounterVec
	actions   *prometheus.CounterVec
	roundTrip *prometheus.HistogramVec
	authFail  *prometheus.CounterVec
	calls     *prometheus.CounterVec
	tokens    *prometheus.CounterVec
}

// NewPrometheusMetrics registers the Agent Platform's collectors on reg.
func NewPrometheusMetrics(reg prometheus.Registerer) (*PrometheusMetrics, error) {
	m := &PrometheusMetrics{
		active: prometheus.NewGauge(prometheus.GaugeOpts{Name: "duo_agent_platform_sessions_active",
			Help: "ExecuteWorkflow sessions running now."}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "duo_agent_platform_sessions_total",
			Help: "ExecuteWorkflow sessions ended, by gRPC code."}, []string{"code"}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "duo_agent_platform_actions_total",
			Help: "Actions sent to executors, by kind."}, []string{"kind"}),
		roundTrip: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "duo_agent_platform_action_round_trip_seconds",
			Help: "Time from sending an action to its answer, by kind.", Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10)}, []string{"kind"}),
		authFail: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "duo_agent_platform_auth_failures_total",
			Help: "Refused calls, by gRPC code."}, []string{"code"}),
	}
	m.calls = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "duo_agent_platform_model_calls_total",
		Help: "Model calls of agents through the attesting proxy, by outcome (ok, error)."}, []string{"outcome"})
	m.tokens = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "duo_agent_platform_model_tokens_total",
		Help: "Tokens of agents' model calls as the backend reported them, by kind (prompt, completion)."}, []string{"kind"})
	for _, c := range []prometheus.Collector{m.active, m.finished, m.actions, m.roundTrip, m.authFail, m.calls, m.tokens} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// SessionStarted implements Metrics.
func (m *PrometheusMetrics) SessionStarted() { m.active.Inc() }

// SessionEnded implements Metrics.
func (m *PrometheusMetrics) SessionEnded(code string, started bool) {
	if started {
		m.active.Dec()
	}
	m.finished.WithLabelValues(code).Inc()
}

// Action implements Metrics.
func (m *PrometheusMetrics) Action(kind string, rt time.Duration) {
	m.actions.WithLabelValues(kind).Inc()
	if rt > 0 {
		m.roundTrip.WithLabelValues(kind).Observe(rt.Seconds())
	}
}

// AuthFailed implements Metrics.
func (m *PrometheusMetrics) AuthFailed(code string) { m.authFail.WithLabelValues(code).Inc() }

// ModelCall records one agent model call (chat.Options.ModelCalls).
func (m *PrometheusMetrics) ModelCall(promptTokens, completionTokens int, failed bool) {
	outcome := "ok"
	if failed {
		outcome = "error"
	}
	m.calls.WithLabelValues(outcome).Inc()
	m.tokens.WithLabelValues("prompt").Add(float64(max(promptTokens, 0)))
	m.tokens.WithLabelValues("completion").Add(float64(max(completionTokens, 0)))
}
