package gitlabconnect

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// PlaceholderAPIKey is what the appliance stores as each model record's API
// key. GitLab admins can read the key in plaintext, and the appliance never
// uses what GitLab sends, so the real Privatemode key never enters GitLab.
const PlaceholderAPIKey = "duo-confidential-placeholder-not-a-secret"

// Target is what GitLab should point at: this appliance.
type Target struct {
	// GatewayURL is the AI gateway URL GitLab calls (http or https, a host
	// GitLab's Rails and Sidekiq nodes reach, never localhost).
	GatewayURL string
	// AgentPlatformAddr is host:port of the appliance's Agent Platform
	// (DuoWorkflow gRPC) listener; empty when the appliance does not serve
	// it, and then the Agent Platform features are left alone and listed as
	// a manual step.
	AgentPlatformAddr string
	// AgentPlatformTLS says whether that listener speaks TLS (GitLab's
	// DUO_AGENT_PLATFORM_SERVICE_SECURE must match).
	AgentPlatformTLS bool
	// TimeoutSeconds is GitLab's AI gateway timeout (60–600); 0 leaves it.
	TimeoutSeconds int
	// Models are the appliance's model records; the first serves every
	// feature Routes does not name.
	Models []Model
	// Routes maps an AiFeatures value to the Name of the model serving it.
	Routes map[string]string
}

// Model is one self-hosted model record the appliance keeps in GitLab.
type Model struct {
	Name       string // GitLab's unique "deployment name"
	Endpoint   string // an OpenAI-compatible URL ending in /v1
	Identifier string // custom_openai/<served model id>
	Family     string // AiAcceptedSelfHostedModels value; DefaultFamily if empty
}

// ModelFor returns the model record name serving feature.
func (t Target) ModelFor(feature string) string {
	if n, ok := t.Routes[feature]; ok {
		return n
	}
	return t.Models[0].Name
}

// family returns m's family, or DefaultFamily.
func (m Model) family() string {
	if m.Family == "" {
		return DefaultFamily
	}
	return strings.ToUpper(m.Family)
}

// Check validates t the way GitLab will (gitlab-admin-api.md §2, §3), so a
// plan never proposes what GitLab would refuse. Loopback addresses are only
// warnings: GitLab refuses them in production but not in development mode
// (the demo's stand-in), and GitLab's answer is the authority.
func (t Target) Check() (warnings []string, err error) {
	var errs []error
	if err := checkGatewayURL(t.GatewayURL); err != nil {
		errs = append(errs, err)
	} else if u, _ := url.Parse(t.GatewayURL); isLocalhost(u.Hostname()) {
		warnings = append(warnings, fmt.Sprintf("the AI gateway URL %s names localhost: a production GitLab refuses it and its nodes could not reach it; set gitlab_admin.gateway_url to an address GitLab reaches", t.GatewayURL))
	}
	if t.AgentPlatformAddr != "" {
		if err := checkHostPort(t.AgentPlatformAddr); err != nil {
			errs = append(errs, fmt.Errorf("the Agent Platform address: %w", err))
		} else if h, _, _ := net.SplitHostPort(t.AgentPlatformAddr); isLocalhost(h) {
			warnings = append(warnings, fmt.Sprintf("the Agent Platform address %s is a loopback address GitLab's nodes cannot reach", t.AgentPlatformAddr))
		}
	}
	if t.TimeoutSeconds != 0 && (t.TimeoutSeconds < 60 || t.TimeoutSeconds > 600) {
		errs = append(errs, fmt.Errorf("AI gateway timeout %d s is outside GitLab's 60–600 s", t.TimeoutSeconds))
	}
	if len(t.Models) == 0 {
		errs = append(errs, errors.New("no model to register (gateway.models is empty)"))
	}
	var names []string
	for _, m := range t.Models {
		if m.Name == "" || len(m.Name) > 255 {
			errs = append(errs, fmt.Errorf("model name %q: must be 1–255 characters", m.Name))
		}
		if slices.Contains(names, m.Name) {
			errs = append(errs, fmt.Errorf("model name %q twice (GitLab's names are unique)", m.Name))
		}
		names = append(names, m.Name)
		if u, err := url.Parse(m.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("model %s: endpoint %q is not an http(s) URL", m.Name, m.Endpoint))
		}
	}
	for f, n := range t.Routes {
		if !slices.Contains(names, n) {
			errs = append(errs, fmt.Errorf("feature %s routed to unknown model %q", f, n))
		}
	}
	return warnings, errors.Join(errs...)
}

// checkGatewayURL applies GitLab's rules for aiGatewayUrl: http(s), no
// localhost (refused in production), at most 2048 characters.
func checkGatewayURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("AI gateway URL %q must be an http or https URL", s)
	}
	if len(s) > 2048 {
		return errors.New("AI gateway URL is longer than GitLab's 2048 characters")
	}
	return nil
}

// checkHostPort applies GitLab's rule for duoAgentPlatformServiceUrl:
// host:port without a scheme.
func checkHostPort(s string) error {
	if strings.Contains(s, "://") {
		return fmt.Errorf("%q has a scheme; GitLab wants host:port without one (TLS is GitLab's DUO_AGENT_PLATFORM_SERVICE_SECURE)", s)
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return fmt.Errorf("%q is not host:port", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q has no valid port", s)
	}
	return nil
}

// isLocalhost reports whether host is localhost or a loopback address.
func isLocalhost(host string) bool {
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// isPrivate reports whether host is an address GitLab's outbound request
// blocker refuses unless it is allowlisted (private, link-local).
func isPrivate(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && (ip.IsPrivate() || ip.IsLinkLocalUnicast())
}

// normURL is GitLab's normalisation of the two URLs: trailing / stripped.
func normURL(s string) string { return strings.TrimRight(strings.TrimSpace(s), "/") }
