package ui

import (
	"fmt"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/keys"
	"github.com/duo-confidential/duo-confidential/jwks"
	"github.com/duo-confidential/duo-confidential/proxy/attest"
	"github.com/duo-confidential/duo-confidential/proxy/secret"
)

// Status is the document GET /api/status answers and every page renders.
// Its fields are documented in README.md; times are RFC 3339 UTC, ages in
// seconds at GeneratedAt.
type Status struct {
	Version string `json:"version"`
	// Replica names this appliance among several behind one Service: its
	// host name (in Kubernetes, the pod name).
	Replica     string      `json:"replica,omitempty"`
	GeneratedAt time.Time   `json:"generated_at"`
	Notice      string      `json:"notice,omitempty"`
	Ready       bool        `json:"ready"`
	Components  []Component `json:"components"`
	Attestation *TrustState `json:"attestation"`
	TrustLog    TrustLog    `json:"trust_log"`
	Gateway     Gateway     `json:"gateway"`
	// AgentPlatform is nil when the Agent Platform is not configured.
	AgentPlatform *AgentPlatform `json:"agent_platform,omitempty"`
	TLS           TLSState       `json:"tls"`
	Traffic       Traffic        `json:"traffic"`
	// GitLab is the drift watch's view of GitLab's Duo configuration; nil
	// when gitlab_admin.watch is off.
	GitLab   *GitLabDrift `json:"gitlab,omitempty"`
	Receipts *Receipts    `json:"receipts,omitempty"`
}

// Component is one part's readiness, for the overview.
type Component struct {
	Name   string `json:"name"` // attestation, secret, gitlab_keys, models, tls
	Title  string `json:"title"`
	Ready  bool   `json:"ready"`
	Detail string `json:"detail"`
}

// TrustState is the trust manager's status plus ages derived from it; nil
// when the appliance runs with a fixed sandbox secret.
type TrustState struct {
	secret.Status
	// AgeSeconds is the time since the last accepted attestation.
	AgeSeconds float64 `json:"age_seconds"`
	// SecretAgeSeconds is the age of the current inference secret.
	SecretAgeSeconds float64 `json:"secret_age_seconds"`
	// Collateral is the collateral used by the last verification, with ages.
	Collateral []CollateralAge `json:"collateral"`
}

// CollateralAge is one piece of collateral and how old it is.
type CollateralAge struct {
	attest.CollateralUse
	// AgeSeconds counts from the issue date (else the fetch time).
	AgeSeconds float64 `json:"age_seconds"`
	// Stale is true past NextUpdate.
	Stale bool `json:"stale"`
}

// TrustLog is the hash-chained trust log as verified now.
type TrustLog struct {
	Path    string `json:"path"`
	ChainOK bool   `json:"chain_ok"`
	Error   string `json:"error,omitempty"`
	Count   int    `json:"count"`
	// Entries are the newest entries, newest first (at most maxLogEntries).
	Entries []attest.TrustEntry `json:"entries"`
}

// maxLogEntries bounds the trust log entries in the status document.
const maxLogEntries = 50

// AgentPlatform is the Agent Platform service's state.
type AgentPlatform struct {
	Ready    bool   `json:"ready"`
	Reason   string `json:"reason,omitempty"`
	Sessions int    `json:"sessions"`
}

// Gateway is the GitLab-facing half's state.
type Gateway struct {
	Enabled    bool           `json:"enabled"`
	Ready      bool           `json:"ready"`
	Reason     string         `json:"reason,omitempty"`
	GitLabKeys *jwks.Status   `json:"gitlab_keys,omitempty"`
	Keys       []keys.KeyInfo `json:"keys"`
	// KeysRotatable is false for operator-supplied keys.
	KeysRotatable bool        `json:"keys_rotatable"`
	Models        SetupModels `json:"models"`
}

// buildStatus reads every source once. traffic may be nil (pages that do
// not show it skip gathering metrics).
func buildStatus(src Sources, now time.Time, traffic *Traffic) *Status {
	st := &Status{Version: src.Version, Replica: src.Replica, GeneratedAt: now.UTC(), Notice: src.Notice}
	proxyReady, proxyWhy := true, ""
	if src.Ready != nil {
		proxyReady, proxyWhy = src.Ready()
	}
	if src.Trust != nil {
		if t := src.Trust(); t != nil {
			st.Attestation = trustState(*t, now)
		}
	}
	st.TrustLog = trustLog(src)
	st.Receipts = receiptsState(src)
	st.Gateway = gatewayState(src)
	if src.AgentPlatformReady != nil {
		ap := &AgentPlatform{}
		ap.Ready, ap.Reason = src.AgentPlatformReady()
		if src.AgentPlatformSessions != nil {
			ap.Sessions = src.AgentPlatformSessions()
		}
		st.AgentPlatform = ap
	}
	st.TLS = TLSState{Reason: "TLS status is not available", Plaintext: true, Certificates: []CertState{}}
	if src.TLS != nil {
		st.TLS = src.TLS()
		if st.TLS.Certificates == nil {
			st.TLS.Certificates = []CertState{}
		}
	}
	if traffic != nil {
		st.Traffic = *traffic
	}
	st.GitLab = gitlabDrift(src)
	st.Components = components(st, proxyReady, proxyWhy, now)
	if c, ok := gitlabComponent(st.GitLab, now); ok {
		st.Components = append(st.Components, c)
	}
	st.Ready = true
	for _, c := range st.Components {
		// TLS health is reported, not required: plaintext on loopback is a
		// valid setup. Without a gateway there is nothing to wait for.
		// GitLab drift is a warning: the appliance itself can serve.
		if !c.Ready && c.Name != "tls" && c.Name != "gitlab" && (c.Name != "models" || st.Gateway.Enabled) {
			st.Ready = false
		}
	}
	return st
}

func trustState(s secret.Status, now time.Time) *TrustState {
	t := &TrustState{Status: s, Collateral: []CollateralAge{}}
	if !s.LastAttestedAt.IsZero() {
		t.AgeSeconds = now.Sub(s.LastAttestedAt).Seconds()
	}
	if !s.SecretCreatedAt.IsZero() {
		t.SecretAgeSeconds = now.Sub(s.SecretCreatedAt).Seconds()
	}
	if s.Attestation != nil {
		for _, c := range s.Attestation.Collateral {
			from := c.IssueDate
			if from.IsZero() {
				from = c.FetchedAt
			}
			ca := CollateralAge{CollateralUse: c, Stale: !c.NextUpdate.IsZero() && now.After(c.NextUpdate)}
			if !from.IsZero() {
				ca.AgeSeconds = now.Sub(from).Seconds()
			}
			t.Collateral = append(t.Collateral, ca)
		}
	}
	return t
}

func trustLog(src Sources) TrustLog {
	tl := TrustLog{Entries: []attest.TrustEntry{}}
	if src.TrustLog == nil {
		tl.Error = "no trust log: this appliance runs without attestation (fixed sandbox secret)"
		return tl
	}
	path, entries, err := src.TrustLog()
	tl.Path, tl.Count = path, len(entries)
	if err != nil {
		tl.Error = err.Error()
		return tl
	}
	tl.ChainOK = true
	for i := len(entries) - 1; i >= 0 && len(tl.Entries) < maxLogEntries; i-- {
		tl.Entries = append(tl.Entries, entries[i])
	}
	return tl
}

func gatewayState(src Sources) Gateway {
	g := Gateway{Keys: []keys.KeyInfo{}}
	if src.Setup != nil {
		su := src.Setup()
		g.Enabled, g.Models = su.GatewayEnabled, su.Models
	}
	if src.GatewayReady != nil {
		g.Ready, g.Reason = src.GatewayReady()
	}
	if src.GitLabKeys != nil {
		g.GitLabKeys = src.GitLabKeys()
	}
	if src.Keys != nil {
		if ks := src.Keys(); ks != nil {
			g.Keys = ks.Info()
			g.KeysRotatable = !ks.Operator()
		}
	}
	return g
}

// components is the overview: one line per part, with the reason.
func components(st *Status, proxyReady bool, proxyWhy string, now time.Time) []Component {
	var out []Component
	att := Component{Name: "attestation", Title: "Attestation", Ready: proxyReady, Detail: proxyWhy}
	sec := Component{Name: "secret", Title: "Inference secret"}
	if t := st.Attestation; t != nil {
		if r := t.Attestation; r != nil && r.Verdict == attest.VerdictAccepted && proxyReady {
			att.Detail = string(r.Platform) + " evidence accepted " + ago(now, t.LastAttestedAt) + "; next re-attestation " + until(now, t.NextAttestationAt)
		} else if r != nil && r.Verdict == attest.VerdictRejected {
			att.Detail = "rejected (" + string(r.ErrorClass) + "): " + r.Error
		}
		sec.Ready = t.SecretID != "" && (t.SecretExpiresAt.IsZero() || now.Before(t.SecretExpiresAt))
		if sec.Ready {
			sec.Detail = "agreed " + ago(now, t.SecretCreatedAt) + ", expires " + until(now, t.SecretExpiresAt) + ", " + plural(t.Rotations, " rotation")
		} else {
			sec.Detail = "no secret agreed with the backend"
			if t.LastError != "" {
				sec.Detail += ": " + t.LastError
			}
		}
	} else {
		sec.Ready, sec.Detail = proxyReady, "fixed sandbox secret (NOT CONFIDENTIAL)"
	}
	out = append(out, att, sec)
	if !st.TrustLog.ChainOK && st.TrustLog.Path != "" {
		out = append(out, Component{Name: "trust_log", Title: "Trust log", Detail: st.TrustLog.Error})
	} else if st.TrustLog.Path != "" {
		out = append(out, Component{Name: "trust_log", Title: "Trust log", Ready: true, Detail: plural(uint64(st.TrustLog.Count), " entry") + ", hash chain verified"})
	}
	g := st.Gateway
	if g.Enabled {
		keys := Component{Name: "gitlab_keys", Title: "GitLab's signing keys"}
		if k := g.GitLabKeys; k != nil {
			keys.Ready = k.Ready
			switch {
			case k.Ready && k.LastError != "":
				keys.Detail = plural(uint64(k.KeyCount), " key") + " loaded; the last refresh failed (" + k.LastError + "), the last good keys stay in use"
			case k.Ready:
				keys.Detail = plural(uint64(k.KeyCount), " key") + " loaded " + ago(now, k.LastSuccess)
			default:
				keys.Detail = "waiting for GitLab's keys"
				if k.LastError != "" {
					keys.Detail += ": " + k.LastError
				}
			}
		}
		models := Component{Name: "models", Title: "Gateway and models", Ready: g.Ready, Detail: g.Reason}
		if g.Ready {
			models.Detail = "every configured model is served by the attested backend"
		}
		out = append(out, keys, models)
	} else {
		out = append(out, Component{Name: "models", Title: "Gateway and models", Detail: "the gateway is not configured: set gateway.gitlab_url"})
	}
	if ap := st.AgentPlatform; ap != nil {
		c := Component{Name: "agent_platform", Title: "Agent Platform", Ready: ap.Ready, Detail: ap.Reason}
		if ap.Ready {
			c.Detail = fmt.Sprintf("serving Agentic Chat; %s running", plural(uint64(ap.Sessions), " session"))
		}
		out = append(out, c)
	}
	tls := Component{Name: "tls", Title: "TLS", Ready: st.TLS.Ready, Detail: st.TLS.Reason}
	if st.TLS.Ready && tls.Detail == "" {
		tls.Detail = plural(uint64(len(st.TLS.Certificates)), " certificate") + " valid"
	}
	return append(out, tls)
}
