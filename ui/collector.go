package ui

import (
	"strings"

	"github.com/duo-confidential/duo-confidential/gateway/gitlabconnect"
	"github.com/duo-confidential/duo-confidential/gateway/keys"
	"github.com/duo-confidential/duo-confidential/proxy/attest"
	"github.com/prometheus/client_golang/prometheus"
)

// stateCollector mirrors the trust state into gauges at scrape time, so
// /metrics can never disagree with the status document.
type stateCollector struct {
	status func() *Status
	descs  map[string]*prometheus.Desc
}

// metricHelp lists every state metric: name → help and labels.
var metricHelp = []struct {
	name, help string
	labels     []string
}{
	{"duo_build_info", "Always 1; the labels are the appliance's version and its replica (host or pod) name.", []string{"version", "replica"}},
	{"duo_ready", "1 when every required part is ready (attestation, secret, trust log, GitLab keys, models).", nil},
	{"duo_component_ready", "1 when the component is ready, by component (attestation, secret, trust_log, gitlab_keys, models, tls).", []string{"component"}},
	{"duo_attestation_age_seconds", "Seconds since the backend's evidence was last accepted.", nil},
	{"duo_attestation_next_seconds", "Seconds until the next scheduled re-attestation (negative when overdue).", nil},
	{"duo_attestation_verdict", "1 for the verdict of the last verification, by platform, verdict and error class (empty when accepted).", []string{"platform", "verdict", "error_class"}},
	{"duo_attestation_failures_total", "Failed attestations since start.", nil},
	{"duo_attestation_tcb_status", "1 per platform TCB component of the last verification, by component and status.", []string{"component", "status"}},
	{"duo_attestation_collateral_age_seconds", "Age of each piece of collateral the last verification used (from its issue date, else its fetch time).", []string{"item", "source"}},
	{"duo_attestation_collateral_next_update_seconds", "Seconds until each piece of collateral's next update (negative when past).", []string{"item"}},
	{"duo_secret_age_seconds", "Age of the current inference secret.", nil},
	{"duo_secret_expires_in_seconds", "Seconds until the current inference secret expires.", nil},
	{"duo_secret_rotations_total", "Inference secrets installed after the first.", nil},
	{"duo_secret_exchange_failures_total", "Failed secret exchanges since start.", nil},
	{"duo_trust_log_entries", "Entries in the trust log.", nil},
	{"duo_trust_log_chain_ok", "1 when the trust log's hash chain verifies.", nil},
	{"duo_receipts_written_total", "Request receipts written since start.", nil},
	{"duo_receipts_failures_total", "Receipt write failures since start (each lost receipt and each failed write; see receipts.on_failure).", nil},
	{"duo_receipts_queue_depth", "Receipts waiting to be written.", nil},
	{"duo_receipts_checkpoints_total", "Signed receipt checkpoints written since start.", nil},
	{"duo_receipts_failing", "1 while receipts cannot be written (with on_failure refuse, requests are refused meanwhile).", nil},
	{"duo_receipts_verified_ok", "1 when the last background verification of the receipt files found no problem.", nil},
	{"duo_jwks_ready", "1 when GitLab's signing keys have been fetched at least once.", nil},
	{"duo_jwks_keys", "GitLab signing keys in use.", nil},
	{"duo_jwks_fetches_total", "Fetches of GitLab's key set since start.", nil},
	{"duo_jwks_fetch_failures_total", "Failed fetches of GitLab's key set since start.", nil},
	{"duo_jwks_consecutive_failures", "Failed fetches since the last success.", nil},
	{"duo_jwks_last_success_age_seconds", "Seconds since GitLab's key set was last fetched successfully.", nil},
	{"duo_gateway_ready", "1 when the gateway can serve Duo requests.", nil},
	{"duo_gateway_signing_key_age_seconds", "Age of the gateway's self-signed JWT signing key (generated keys only).", nil},
	{"duo_tls_ready", "1 when every listener that needs a certificate has a valid one.", nil},
	{"duo_tls_certificate_expiry_seconds", "Seconds until each certificate expires, by its first name.", []string{"name", "issuer"}},
	{"duo_tls_certificate_renewal_failing", "1 when the last attempt to obtain, renew or reload the certificate failed (it keeps serving until it expires).", []string{"name"}},
	{"duo_tls_plaintext", "1 when the listeners serve plain HTTP (tls.source: off).", nil},
	{"duo_gitlab_features", "GitLab Duo features by state as the drift watch last saw them: self_hosted (on this appliance's models), vendored, unassigned, other_model, disabled, hidden, not_served.", []string{"state"}},
	{"duo_gitlab_drift_problems", "Problems the GitLab drift watch found in its last poll (features off this appliance, changed URLs, cloud probes).", nil},
	{"duo_gitlab_watch_ok", "1 when the drift watch read GitLab and nothing drifted.", nil},
}

func newStateCollector(status func() *Status) *stateCollector {
	c := &stateCollector{status: status, descs: map[string]*prometheus.Desc{}}
	for _, m := range metricHelp {
		c.descs[m.name] = prometheus.NewDesc(m.name, m.help, m.labels, nil)
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.status()
	now := st.GeneratedAt
	g := func(name string, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.descs[name], prometheus.GaugeValue, v, labels...)
	}
	counter := func(name string, v float64) {
		ch <- prometheus.MustNewConstMetric(c.descs[name], prometheus.CounterValue, v)
	}
	g("duo_build_info", 1, st.Version, st.Replica)
	g("duo_ready", b2f(st.Ready))
	for _, comp := range st.Components {
		g("duo_component_ready", b2f(comp.Ready), comp.Name)
	}
	if t := st.Attestation; t != nil {
		if !t.LastAttestedAt.IsZero() {
			g("duo_attestation_age_seconds", t.AgeSeconds)
		}
		if !t.NextAttestationAt.IsZero() {
			g("duo_attestation_next_seconds", t.NextAttestationAt.Sub(now).Seconds())
		}
		counter("duo_attestation_failures_total", float64(t.AttestationFailures))
		if r := t.Attestation; r != nil {
			g("duo_attestation_verdict", 1, string(r.Platform), string(r.Verdict), string(r.ErrorClass))
			for _, tc := range r.TCB {
				g("duo_attestation_tcb_status", 1, tc.Name, tc.Status)
			}
		}
		seen := map[string]bool{}
		for _, col := range t.Collateral {
			if seen[col.Name] {
				continue
			}
			seen[col.Name] = true
			g("duo_attestation_collateral_age_seconds", col.AgeSeconds, col.Name, col.Source)
			if !col.NextUpdate.IsZero() {
				g("duo_attestation_collateral_next_update_seconds", col.NextUpdate.Sub(now).Seconds(), col.Name)
			}
		}
		if t.SecretID != "" {
			g("duo_secret_age_seconds", t.SecretAgeSeconds)
			if !t.SecretExpiresAt.IsZero() {
				g("duo_secret_expires_in_seconds", t.SecretExpiresAt.Sub(now).Seconds())
			}
		}
		counter("duo_secret_rotations_total", float64(t.Rotations))
		counter("duo_secret_exchange_failures_total", float64(t.ExchangeFailures))
	}
	if st.TrustLog.Path != "" {
		g("duo_trust_log_entries", float64(st.TrustLog.Count))
		g("duo_trust_log_chain_ok", b2f(st.TrustLog.ChainOK))
	}
	if r := st.Receipts; r != nil {
		counter("duo_receipts_written_total", float64(r.Written))
		counter("duo_receipts_failures_total", float64(r.Failures))
		g("duo_receipts_queue_depth", float64(r.QueueDepth))
		counter("duo_receipts_checkpoints_total", float64(r.Checkpoints))
		g("duo_receipts_failing", b2f(r.Failing))
		if v := r.Verification; v != nil {
			g("duo_receipts_verified_ok", b2f(v.OK))
		}
	}
	if gw := st.Gateway; gw.Enabled {
		g("duo_gateway_ready", b2f(gw.Ready))
		if k := gw.GitLabKeys; k != nil {
			g("duo_jwks_ready", b2f(k.Ready))
			g("duo_jwks_keys", float64(k.KeyCount))
			counter("duo_jwks_fetches_total", float64(k.Fetches))
			counter("duo_jwks_fetch_failures_total", float64(k.Failures))
			g("duo_jwks_consecutive_failures", float64(k.ConsecutiveFailures))
			if !k.LastSuccess.IsZero() {
				g("duo_jwks_last_success_age_seconds", now.Sub(k.LastSuccess).Seconds())
			}
		}
		for _, k := range gw.Keys {
			if k.Role == keys.RoleSigning && !k.Created.IsZero() {
				g("duo_gateway_signing_key_age_seconds", now.Sub(k.Created).Seconds())
			}
		}
	}
	g("duo_tls_ready", b2f(st.TLS.Ready))
	seen := map[string]bool{}
	for _, cert := range st.TLS.Certificates {
		name := strings.Join(cert.Names, ",")
		if len(cert.Names) > 0 {
			name = cert.Names[0]
		}
		if cert.NotAfter.IsZero() || seen[name] {
			continue
		}
		seen[name] = true
		g("duo_tls_certificate_expiry_seconds", cert.NotAfter.Sub(now).Seconds(), name, cert.Issuer)
		g("duo_tls_certificate_renewal_failing", b2f(cert.LastError != ""), name)
	}
	g("duo_tls_plaintext", b2f(st.TLS.Plaintext))
	if d := st.GitLab; d != nil {
		g("duo_gitlab_watch_ok", b2f(d.OK))
		if d.Polled && d.Err == "" {
			for _, state := range gitlabconnect.States {
				g("duo_gitlab_features", float64(d.Counts[state]), state)
			}
			g("duo_gitlab_drift_problems", float64(len(d.Problems)))
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// lastVerdict is a short verdict line for pages.
func lastVerdict(r *attest.Result) string {
	if r == nil {
		return "no verification yet"
	}
	if r.Verdict == attest.VerdictAccepted {
		return "accepted"
	}
	return "rejected (" + string(r.ErrorClass) + ")"
}
