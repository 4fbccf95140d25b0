package config

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/duo-confidential/duo-confidential/internal/statedir"
	"github.com/duo-confidential/duo-confidential/proxy/attest"
	apptls "github.com/duo-confidential/duo-confidential/tls"
)

// ExampleConfig is the fully commented example configuration. It sets every
// key to its default, so it is also a valid configuration as it stands.
//
//go:embed config.example.yaml
var ExampleConfig []byte

// Defaults of the configuration keys. They are constants (not a package-level
// Config value) so no caller can change another caller's defaults.
const (
	DefaultStateDir            = "/var/lib/duo-confidential"
	DefaultLogLevel            = "info"
	DefaultLogFormat           = "text"
	DefaultOutboundTimeout     = 15 * time.Second
	DefaultPrivatemodeEndpoint = "https://api.privatemode.ai"
	DefaultManifestMode        = ManifestModeDynamic
	// DefaultMaxInFlight caps requests and streams served at once per
	// listener (proxy.max_in_flight, gateway.max_in_flight).
	DefaultMaxInFlight        = 2048
	DefaultManifestURL        = "https://cdn.confidential.cloud/privatemode/v2/manifest.json"
	DefaultManifestMaxHistory = 1
	DefaultReattestInterval   = time.Hour
	DefaultCollateralOnline   = true
	DefaultCollateralMaxAge   = 720 * time.Hour
	DefaultProxyListen        = "127.0.0.1:8080"
	DefaultProxyMaxRequest    = 32 << 20
	DefaultProxyReadTimeout   = 60 * time.Second
	DefaultProxyUpstream      = 10 * time.Minute
	DefaultProxyStreamIdle    = 2 * time.Minute
	DefaultProxyCacheSalt     = CacheSaltPerRequest
	DefaultGatewayListen      = "127.0.0.1:5052"
	DefaultGatewayServiceName = "gitlab-ai-gateway"
	DefaultGatewayFormat      = "chat"
	DefaultGatewayMaxRequest  = 8 << 20
	DefaultGatewayCompletions = 30 * time.Second
	DefaultGatewayGenerations = 50 * time.Second
	DefaultGatewayChat        = 60 * time.Second
	DefaultGatewayPrompts     = 60 * time.Second
	DefaultGatewayCheck       = 2500 * time.Millisecond
)

// Manifest modes: how the appliance decides which Privatemode deployment
// manifest it trusts.
const (
	ManifestModePinned    = "pinned"    // trust exactly one manifest file
	ManifestModeAllowlist = "allowlist" // trust manifests whose SHA-256 is listed
	ManifestModeDynamic   = "dynamic"   // trust the vendor's published manifest
)

// EnvPrefix starts the name of every environment variable that overrides a
// configuration key, e.g. DUO_CONFIDENTIAL_STATE_DIR for state_dir.
const EnvPrefix = "DUO_CONFIDENTIAL_"

// EnvConfigPath names the environment variable that selects the configuration
// file. It and EnvProxyToken are the DUO_CONFIDENTIAL_* variables that are not key overrides.
const EnvConfigPath = EnvPrefix + "CONFIG"

// Config is the appliance's whole configuration, as read from one YAML file
// plus DUO_CONFIDENTIAL_* environment overrides.
type Config struct {
	StateDir    string            `yaml:"state_dir"`
	Log         LogConfig         `yaml:"log"`
	Outbound    OutboundConfig    `yaml:"outbound"`
	Privatemode PrivatemodeConfig `yaml:"privatemode"`
	Attestation AttestationConfig `yaml:"attestation"`
	Proxy       ProxyConfig       `yaml:"proxy"`
	Gateway     GatewayConfig     `yaml:"gateway"`
	// AgentPlatform is the gRPC Agent Platform service (agent_platform).
	AgentPlatform AgentPlatformConfig `yaml:"agent_platform"`
	TLS           TLSConfig           `yaml:"tls"`
	Admin         AdminConfig         `yaml:"admin"`
	GitLabAdmin   GitLabAdminConfig   `yaml:"gitlab_admin"`
	Receipts      ReceiptsConfig      `yaml:"receipts"`

	// sources maps a key path ("attestation.manifest.mode") to where its
	// value came from ("config.yaml:12" or "env DUO_CONFIDENTIAL_..."), so
	// validation errors can point at the line to fix. Nil for a Config built
	// in code.
	sources map[string]string
}

// LogConfig selects the service's log level (debug|info|warn|error) and
// format (text|json).
type LogConfig struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// OutboundConfig applies to every outbound HTTPS call: CABundle is a PEM file
// of extra roots added to the system roots (for a TLS-intercepting proxy), and
// Timeout bounds each call.
type OutboundConfig struct {
	CABundle string        `yaml:"ca_bundle"`
	Timeout  time.Duration `yaml:"timeout"`
}

// PrivatemodeConfig locates the Privatemode API (an https URL) and the file
// holding its API key.
type PrivatemodeConfig struct {
	Endpoint   string `yaml:"endpoint"`
	APIKeyFile string `yaml:"api_key_file"`
}

// AttestationConfig decides which deployments are trusted (Manifest), where
// verification collateral comes from (Collateral) and how often the service
// is re-attested (ReattestInterval, at least one minute).
type AttestationConfig struct {
	Manifest         ManifestConfig   `yaml:"manifest"`
	Collateral       CollateralConfig `yaml:"collateral"`
	ReattestInterval time.Duration    `yaml:"reattest_interval"`
	TCBPolicy        TCBPolicyConfig  `yaml:"tcb_policy"`
}

// TCBPolicyConfig is the operator's explicit decision on platforms whose
// TCB is not current: Intel TCB statuses besides UpToDate that are accepted
// (with every advisory they name listed), and per AMD product line a floor
// for the SEV-SNP security patch levels. The zero value accepts only
// UpToDate TDX platforms and adds no SEV-SNP floor.
type TCBPolicyConfig struct {
	TDX TDXTCBPolicyConfig `yaml:"tdx"`
	SNP SNPTCBPolicyConfig `yaml:"snp"`
}

// TDXTCBPolicyConfig lists the accepted Intel TCB statuses and advisory IDs.
type TDXTCBPolicyConfig struct {
	AcceptStatuses   []string `yaml:"accept_statuses"`
	AcceptAdvisories []string `yaml:"accept_advisories"`
}

// SNPTCBPolicyConfig holds the operator's minimum SEV-SNP TCB per product
// line, each written as "bootloader=4 tee=0 snp=22 microcode=213" (Turin
// also fmc=N); empty means no floor beyond the manifest's.
type SNPTCBPolicyConfig struct {
	MinimumTCB SNPMinimumTCBConfig `yaml:"minimum_tcb"`
}

// SNPMinimumTCBConfig is SNPTCBPolicyConfig's floor per product line.
type SNPMinimumTCBConfig struct {
	Milan string `yaml:"milan"`
	Genoa string `yaml:"genoa"`
	Turin string `yaml:"turin"`
}

// TCBPolicy turns the tcb_policy section into the verifier's policy.
func (c *Config) TCBPolicy() (attest.TCBPolicy, error) {
	tp := c.Attestation.TCBPolicy
	p := attest.TCBPolicy{
		TDXAcceptStatuses:   tp.TDX.AcceptStatuses,
		TDXAcceptAdvisories: tp.TDX.AcceptAdvisories,
	}
	for _, pl := range []struct{ product, key, text string }{
		{"Milan", "milan", tp.SNP.MinimumTCB.Milan},
		{"Genoa", "genoa", tp.SNP.MinimumTCB.Genoa},
		{"Turin", "turin", tp.SNP.MinimumTCB.Turin},
	} {
		m, ok, err := attest.ParseSNPMinimumTCB(pl.product, pl.text)
		if err != nil {
			return attest.TCBPolicy{}, fmt.Errorf("attestation.tcb_policy.snp.minimum_tcb.%s: %w", pl.key, err)
		}
		if ok {
			if p.SNPMinimumTCB == nil {
				p.SNPMinimumTCB = map[string]attest.SNPMinimumTCB{}
			}
			p.SNPMinimumTCB[pl.product] = m
		}
	}
	if err := p.Validate(); err != nil {
		return attest.TCBPolicy{}, fmt.Errorf("attestation.tcb_policy: %w", err)
	}
	return p, nil
}

// ManifestConfig selects the manifest trust mode and its inputs; see the
// ManifestMode* constants. Hex digests are lower-cased by Parse.
type ManifestConfig struct {
	Mode              string   `yaml:"mode"`
	File              string   `yaml:"file"`
	AllowedSHA256     []string `yaml:"allowed_sha256"`
	URL               string   `yaml:"url"`
	MaxHistory        int      `yaml:"max_history"`
	ApprovedRollbacks []string `yaml:"approved_rollbacks"`
}

// CollateralConfig locates the collateral bundle (Intel PCS / AMD KDS
// certificates, CRLs and TCB data), says whether missing pieces may be fetched
// online, and how old cached collateral may be before it is refused.
type CollateralConfig struct {
	Bundle string        `yaml:"bundle"`
	Online bool          `yaml:"online"`
	MaxAge time.Duration `yaml:"max_age"`
}

// ProxyConfig is the attesting encryption proxy's OpenAI-compatible
// listener: where it listens, who may use it, its limits and timeouts, and
// how prompt-cache salts and the GPU OCSP policy are chosen.
type ProxyConfig struct {
	Listen             string        `yaml:"listen"`
	InboundTokenSHA256 []string      `yaml:"inbound_token_sha256"`
	MaxRequestBytes    int           `yaml:"max_request_bytes"`
	MaxInFlight        int           `yaml:"max_in_flight"`
	ReadTimeout        time.Duration `yaml:"read_timeout"`
	UpstreamTimeout    time.Duration `yaml:"upstream_timeout"`
	StreamIdleTimeout  time.Duration `yaml:"stream_idle_timeout"`
	CacheSalt          string        `yaml:"cache_salt"`
	SharedSaltFile     string        `yaml:"shared_salt_file"`
	StrictOCSP         bool          `yaml:"strict_ocsp"`
	PlatformHeaders    bool          `yaml:"platform_headers"`
}

// GatewayConfig is the GitLab AI-Gateway-compatible front end: where it
// listens, which GitLab instance's tokens it accepts, which proxy model
// serves each Duo feature, and the per-feature time limits. The gateway runs
// only when GitLabURL is set.
type GatewayConfig struct {
	Listen            string          `yaml:"listen"`
	GitLabURL         string          `yaml:"gitlab_url"`
	ServiceName       string          `yaml:"service_name"`
	Models            GatewayModels   `yaml:"models"`
	CompletionFormat  string          `yaml:"completion_format"`
	AllowedModels     []string        `yaml:"allowed_models"`
	MaxRequestBytes   int             `yaml:"max_request_bytes"`
	MaxInFlight       int             `yaml:"max_in_flight"`
	Timeouts          GatewayTimeouts `yaml:"timeouts"`
	SigningKeyFile    string          `yaml:"signing_key_file"`
	ValidationKeyFile string          `yaml:"validation_key_file"`
}

// GatewayModels names the proxy model (an id of its /v1/models) of each
// feature; Default serves every feature without its own entry.
type GatewayModels struct {
	Default         string `yaml:"default"`
	CodeCompletions string `yaml:"code_completions"`
	CodeGenerations string `yaml:"code_generations"`
	DuoChat         string `yaml:"duo_chat"`
}

// GatewayTimeouts bound each kind of model call inside GitLab's own limits
// (Workhorse 55 s for code suggestions, 3 s for Test connection, the AI
// gateway timeout of 60–600 s for chat).
type GatewayTimeouts struct {
	Completions time.Duration `yaml:"completions"`
	Generations time.Duration `yaml:"generations"`
	Chat        time.Duration `yaml:"chat"`
	Prompts     time.Duration `yaml:"prompts"`
	Check       time.Duration `yaml:"check"`
}

// Enabled reports whether the gateway is configured to run.
func (g GatewayConfig) Enabled() bool { return g.GitLabURL != "" }

// Cache-salt modes for proxy.cache_salt.
const (
	CacheSaltPerRequest = "per-request" // a fresh random salt per request: no cache sharing
	CacheSaltShared     = "shared"      // one salt from shared_salt_file: prefix-cache sharing between requests
)

// Default returns a new Config holding every default. It is valid as it is.
func Default() *Config {
	c := baseDefaults()
	c.applyDerivedDefaults()
	return c
}

// baseDefaults returns the defaults that do not depend on other keys; derived
// defaults (the collateral bundle inside state_dir) are filled in only after
// the file and environment have had their say.
func baseDefaults() *Config {
	return &Config{
		StateDir: DefaultStateDir,
		Log:      LogConfig{Level: DefaultLogLevel, Format: DefaultLogFormat},
		Outbound: OutboundConfig{Timeout: DefaultOutboundTimeout},
		Privatemode: PrivatemodeConfig{
			Endpoint: DefaultPrivatemodeEndpoint,
		},
		Attestation: AttestationConfig{
			Manifest: ManifestConfig{
				Mode:       DefaultManifestMode,
				URL:        DefaultManifestURL,
				MaxHistory: DefaultManifestMaxHistory,
			},
			Collateral: CollateralConfig{
				Online: DefaultCollateralOnline,
				MaxAge: DefaultCollateralMaxAge,
			},
			ReattestInterval: DefaultReattestInterval,
		},
		Proxy: ProxyConfig{
			Listen:            DefaultProxyListen,
			MaxRequestBytes:   DefaultProxyMaxRequest,
			MaxInFlight:       DefaultMaxInFlight,
			ReadTimeout:       DefaultProxyReadTimeout,
			UpstreamTimeout:   DefaultProxyUpstream,
			StreamIdleTimeout: DefaultProxyStreamIdle,
			CacheSalt:         DefaultProxyCacheSalt,
		},
		Gateway: GatewayConfig{
			Listen:           DefaultGatewayListen,
			ServiceName:      DefaultGatewayServiceName,
			CompletionFormat: DefaultGatewayFormat,
			MaxRequestBytes:  DefaultGatewayMaxRequest,
			MaxInFlight:      DefaultMaxInFlight,
			Timeouts: GatewayTimeouts{
				Completions: DefaultGatewayCompletions,
				Generations: DefaultGatewayGenerations,
				Chat:        DefaultGatewayChat,
				Prompts:     DefaultGatewayPrompts,
				Check:       DefaultGatewayCheck,
			},
		},
		AgentPlatform: AgentPlatformConfig{
			Listen:        DefaultAgentPlatformListen,
			ContextWindow: DefaultAgentPlatformContextWindow,
			MaxSessions:   DefaultAgentPlatformMaxSessions,
			IdleTimeout:   DefaultAgentPlatformIdleTimeout,
		},
		TLS: TLSConfig{
			Source:  DefaultTLSSource,
			ACME:    ACMEConfig{Directory: DefaultACMEDirectory, RenewalInfo: true},
			LocalCA: LocalCAConfig{LeafLifetime: apptls.DefaultLeafLifetime},
			Files:   TLSFiles{PollInterval: DefaultTLSPollInterval},
		},
		Admin: AdminConfig{
			Listen:         DefaultAdminListen,
			MetricsAuth:    DefaultAdminMetricsAuth,
			SessionTimeout: DefaultAdminSessionTimeout,
		},
		GitLabAdmin: GitLabAdminConfig{
			ModelFamily:  DefaultGitLabAdminModelFamily,
			PollInterval: DefaultGitLabAdminPollInterval,
		},
		Receipts: defaultReceipts(),
	}
}

// applyDerivedDefaults fills keys whose default depends on other keys.
func (c *Config) applyDerivedDefaults() {
	if c.Attestation.Collateral.Bundle == "" && filepath.IsAbs(c.StateDir) {
		c.Attestation.Collateral.Bundle = filepath.Join(c.StateDir, statedir.CollateralFile)
	}
}

// Load reads the configuration file at path (which must exist), applies the
// process's DUO_CONFIDENTIAL_* environment overrides and defaults, and
// validates the result. Errors name the file, line and key.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	return Parse(path, data, os.Environ())
}

// Parse builds a Config from YAML data (name is used in error messages; empty
// data means all defaults) and env, a list of KEY=VALUE strings like
// os.Environ's. It reads neither the process environment nor the file name;
// validation may stat files the configuration names (CA bundle, manifest).
// All problems are returned together, joined with errors.Join.
func Parse(name string, data []byte, env []string) (*Config, error) {
	c := baseDefaults()
	c.sources = make(map[string]string)
	var errs []error
	errs = append(errs, decodeYAML(name, data, c)...)
	errs = append(errs, applyEnv(env, c)...)
	// Validate even when decoding failed, so the admin sees every problem
	// in one round: a value that failed to decode kept its (valid) default,
	// so validation does not report it a second time.
	c.normalize()
	c.applyDerivedDefaults()
	if err := c.Validate(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, flatJoin(errs)
	}
	return c, nil
}

// Source reports where the value of the key at path (e.g.
// "attestation.manifest.mode") came from: "FILE:LINE", "env NAME", or "" for
// a default.
func (c *Config) Source(path string) string {
	return c.sources[path]
}

// FieldError is one problem with one configuration key.
type FieldError struct {
	Source string // where the value came from ("config.yaml:12", "env NAME"), or ""
	Path   string // key path, e.g. "attestation.manifest.mode"; "" for file-level problems
	Msg    string // what is wrong and how to fix it
}

// Error formats the problem as "SOURCE: PATH: MSG", leaving out empty parts.
func (e *FieldError) Error() string {
	s := e.Msg
	if e.Path != "" {
		s = e.Path + ": " + s
	}
	if e.Source != "" {
		s = e.Source + ": " + s
	}
	return s
}

// flatJoin joins errs with errors.Join, unpacking nested joins so callers
// see one flat list of problems (errors.Join's Unwrap() []error), ordered
// as an admin reads them: file problems by line, then environment ones.
func flatJoin(errs []error) error {
	var flat []error
	for _, err := range errs {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			flat = append(flat, j.Unwrap()...)
			continue
		}
		flat = append(flat, err)
	}
	sort.SliceStable(flat, func(i, j int) bool {
		ri, li := problemRank(flat[i])
		rj, lj := problemRank(flat[j])
		return ri < rj || (ri == rj && li < lj)
	})
	return errors.Join(flat...)
}

// problemRank orders problems: 0 with a file line (then by line), 1 from the
// environment, 2 without a source.
func problemRank(err error) (rank, line int) {
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Source == "" {
		return 2, 0
	}
	if strings.HasPrefix(fe.Source, "env ") {
		return 1, 0
	}
	if i := strings.LastIndexByte(fe.Source, ':'); i >= 0 {
		if n, err := strconv.Atoi(fe.Source[i+1:]); err == nil {
			return 0, n
		}
	}
	return 0, 0
}
