package ui

import (
	"context"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/gitlabconnect"
	"github.com/duo-confidential/duo-confidential/gateway/keys"
	"github.com/duo-confidential/duo-confidential/jwks"
	"github.com/duo-confidential/duo-confidential/proxy/attest"
	"github.com/duo-confidential/duo-confidential/proxy/secret"
)

// Sources is where the admin UI reads the appliance's state. A nil func
// means the part is absent (no gateway, no trust manager with a fixed
// secret, TLS not wired); pages say so instead of failing.
type Sources struct {
	// Version is the appliance's version string.
	Version string
	// Replica is this appliance's name among replicas (its host name).
	Replica string
	// Notice, when set, is shown on every page (sandbox mode: NOT
	// CONFIDENTIAL).
	Notice string
	// Ready reports whether the proxy can serve (backend attested, secret
	// agreed) and, if not, why.
	Ready func() (bool, string)
	// Trust is the trust manager's state; nil result with a fixed secret.
	Trust func() *secret.Status
	// GatewayReady reports whether the gateway can serve Duo and why not.
	GatewayReady func() (bool, string)
	// AgentPlatformReady reports whether the Agent Platform can run
	// sessions and why not; nil when it is not configured.
	AgentPlatformReady func() (bool, string)
	// AgentPlatformSessions is the number of running sessions.
	AgentPlatformSessions func() int
	// GitLabKeys is the state of GitLab's key set; nil without gateway.
	GitLabKeys func() *jwks.Status
	// Keys is the gateway's self-signed key store; nil without gateway.
	Keys func() *keys.Store
	// TrustLog reads and verifies the trust log: its path, its entries
	// oldest first, and the error if the chain is broken or unreadable.
	TrustLog func() (path string, entries []attest.TrustEntry, err error)
	// TLS is the state of the listeners' certificates.
	TLS func() TLSState
	// Setup is the configuration GitLab's settings derive from.
	Setup func() Setup
	// TestConnection runs GitLab's Test connection check in-process: the
	// model called, how long it took, and the failure.
	TestConnection func(ctx context.Context) (model string, took time.Duration, err error)
	// GitLabDrift is the GitLab drift watch's latest report; nil (or a nil
	// func) when gitlab_admin.watch is off or it has not polled yet.
	GitLabDrift func() *gitlabconnect.Report
	// GitLabConnect runs `gitlab connect` with an admin's token and
	// returns its report as text; nil without a gateway.
	GitLabConnect func(ctx context.Context, req ConnectRequest) (text string, ok bool, err error)
	// GitLabWatch reports whether gitlab_admin.watch is on.
	GitLabWatch bool
	// Receipts is the receipt log's state; nil (or a nil result) when
	// receipts are off.
	Receipts func() *Receipts
}

// ConnectRequest is one Connect from the GitLab page.
type ConnectRequest struct {
	// Token is a GitLab administrator's personal access token (scope api).
	// It is never logged or shown.
	Token string
	// Apply makes the changes (and verifies); otherwise only the plan.
	Apply bool
	// KeepToken keeps the token (0600, state directory) for the drift watch.
	KeepToken bool
}

// TLSState is the TLS section of the status document, filled by the
// appliance from its certificate manager.
type TLSState struct {
	// Source is how certificates are obtained (e.g. "acme", "internal",
	// "files"), or "" when TLS is not set up.
	Source string `json:"source"`
	// Plaintext is true when the listeners serve plain HTTP.
	Plaintext bool `json:"plaintext"`
	// Ready is true when every listener that needs a certificate has one.
	Ready bool `json:"ready"`
	// Reason says why TLS is not ready, or what plaintext means here.
	Reason       string      `json:"reason,omitempty"`
	Certificates []CertState `json:"certificates"`
	Warnings     []string    `json:"warnings,omitempty"`
	// CAFile and CAFingerprint identify the local CA clients must trust
	// (tls.source local-ca); empty otherwise.
	CAFile        string `json:"ca_file,omitempty"`
	CAFingerprint string `json:"ca_sha256_fingerprint,omitempty"`
}

// CertState is one managed certificate, without its key.
type CertState struct {
	Names     []string  `json:"names"` // subject alternative names
	Source    string    `json:"source"`
	Issuer    string    `json:"issuer"`
	NotBefore time.Time `json:"not_before,omitzero"`
	NotAfter  time.Time `json:"not_after,omitzero"`
	// ExpiresSoon is set when expiry is near enough to act on (for a
	// renewed certificate: renewal is overdue).
	ExpiresSoon   bool      `json:"expires_soon"`
	LastRenewalAt time.Time `json:"last_renewal_at,omitzero"`
	LastError     string    `json:"last_error,omitempty"`
	Warnings      []string  `json:"warnings,omitempty"`
}

// Setup is the part of the configuration that decides what an admin
// enters in GitLab, and where the appliance can probe its own listeners.
type Setup struct {
	// GatewayEnabled is false when gateway.gitlab_url is not set.
	GatewayEnabled bool
	GitLabURL      string
	ServiceName    string
	// GatewayListen and ProxyListen are the configured HOST:PORT.
	GatewayListen string
	ProxyListen   string
	// GatewayProbe and ProxyProbe are base URLs on which the appliance
	// reaches its own listeners ("" when not listening yet).
	GatewayProbe string
	ProxyProbe   string
	// HTTPS is true when the gateway and proxy listeners serve TLS.
	HTTPS bool
	// ProxyTokens is true when the proxy requires inbound tokens.
	ProxyTokens bool
	// Models are the resolved model ids per feature group.
	Models           SetupModels
	AllowedModels    []string
	CompletionFormat string
	ChatTimeout      time.Duration
	CheckTimeout     time.Duration
	// AgentPlatformListen is the Agent Platform's HOST:PORT, "" when it is
	// not served.
	AgentPlatformListen string
	// AgentContextWindow is agent_platform.context_window.
	AgentContextWindow int
}

// SetupModels are the model ids serving each group of Duo features, with
// the default already applied.
type SetupModels struct {
	Default         string `json:"default"`
	CodeCompletions string `json:"code_completions"`
	CodeGenerations string `json:"code_generations"`
	DuoChat         string `json:"duo_chat"`
}
