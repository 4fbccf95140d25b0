package config

import (
	"fmt"
	"net"
	"regexp"
	"strings"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/keys"
)

// completionFormats are the values of gateway.completion_format (the FIM
// formats of gateway/prompts).
var completionFormats = []string{"chat", "suffix", "qwen", "starcoder", "codegemma", "codellama", "deepseek", "codestral"}

// modelIDPattern accepts the model ids OpenAI-compatible servers use
// ("sandbox-chat", "meta-llama/Llama-3.3-70B-Instruct", "gpt-oss:120b").
var modelIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}$`)

// Bounds of the gateway's time limits: each must stay inside the limit of
// the GitLab component that waits for it.
const (
	maxCompletionTimeout = 54 * time.Second // Workhorse gives up at 55 s
	maxCheckTimeout      = 2900 * time.Millisecond
	maxChatTimeout       = 600 * time.Second // GitLab's largest AI gateway timeout
)

func (v *validator) gateway() {
	g := v.c.Gateway
	if _, port, err := net.SplitHostPort(g.Listen); err != nil || port == "" {
		v.fail("gateway.listen", "%q is not HOST:PORT (e.g. 0.0.0.0:5052 so GitLab can reach it)", g.Listen)
	}
	if g.GitLabURL != "" {
		v.httpsURL("gateway.gitlab_url", g.GitLabURL)
		if strings.HasSuffix(g.GitLabURL, "/") {
			v.fail("gateway.gitlab_url", "%q ends with \"/\"; write it exactly as GitLab's external_url (the iss of its tokens), without the trailing slash", g.GitLabURL)
		}
		if g.Models.Default == "" {
			v.fail("gateway.models.default", "must name the model that serves Duo features (an id the Privatemode API lists at /v1/models, e.g. as shown by `curl http://127.0.0.1:8080/v1/models`)")
		}
	}
	if g.ServiceName == "" || strings.ContainsAny(g.ServiceName, " \t\"") {
		v.fail("gateway.service_name", "%q must be a name without spaces; GitLab's is %q", g.ServiceName, DefaultGatewayServiceName)
	}
	for path, id := range map[string]string{
		"gateway.models.default": g.Models.Default, "gateway.models.code_completions": g.Models.CodeCompletions,
		"gateway.models.code_generations": g.Models.CodeGenerations, "gateway.models.duo_chat": g.Models.DuoChat,
	} {
		if id != "" && !modelIDPattern.MatchString(id) {
			v.fail(path, "%q is not a model id (letters, digits and . _ : / @ + -)", id)
		}
	}
	for i, id := range g.AllowedModels {
		if !modelIDPattern.MatchString(id) {
			v.fail(fmt.Sprintf("gateway.allowed_models[%d]", i), "%q is not a model id", id)
		}
	}
	v.oneOf("gateway.completion_format", g.CompletionFormat, completionFormats)
	if g.MaxRequestBytes < 64<<10 || g.MaxRequestBytes > 64<<20 {
		v.fail("gateway.max_request_bytes", "%d is out of range: set between %d and %d bytes", g.MaxRequestBytes, 64<<10, 64<<20)
	}
	v.intIn("gateway.max_in_flight", g.MaxInFlight, 1, 65536)
	t := g.Timeouts
	v.durationIn("gateway.timeouts.completions", t.Completions, time.Second, maxCompletionTimeout)
	v.durationIn("gateway.timeouts.generations", t.Generations, time.Second, maxCompletionTimeout)
	v.durationIn("gateway.timeouts.chat", t.Chat, 5*time.Second, maxChatTimeout)
	v.durationIn("gateway.timeouts.prompts", t.Prompts, time.Second, maxChatTimeout)
	v.durationIn("gateway.timeouts.check", t.Check, 500*time.Millisecond, maxCheckTimeout)
	v.gatewayKeys()
}

// gatewayKeys checks operator-supplied self-signed JWT keys by loading them
// the way the service will.
func (v *validator) gatewayKeys() {
	g := v.c.Gateway
	switch {
	case g.ValidationKeyFile != "" && g.SigningKeyFile == "":
		v.fail("gateway.validation_key_file", "is set without gateway.signing_key_file; the validation key is the previous signing key, so set both")
		return
	case g.SigningKeyFile == "":
		return
	}
	ok := v.absPath("gateway.signing_key_file", g.SigningKeyFile)
	if g.ValidationKeyFile != "" {
		ok = v.absPath("gateway.validation_key_file", g.ValidationKeyFile) && ok
	}
	if !ok {
		return
	}
	if _, err := keys.LoadEnv(v.c.GatewayKeyEnv(nil)); err != nil {
		v.fail("gateway.signing_key_file", "%v (an RSA private key PEM of at least 2048 bits, mode 0600, as for AIGW_SELF_SIGNED_JWT__SIGNING_KEY)", err)
	}
}

// GatewayKeyEnv returns env with the configured key files appended as the
// AIGW_SELF_SIGNED_JWT__* variables GitLab's gateway reads, so the files
// take precedence over keys given in the environment.
func (c *Config) GatewayKeyEnv(env []string) []string {
	out := append([]string(nil), env...)
	if f := c.Gateway.SigningKeyFile; f != "" {
		out = append(out, keys.EnvSigningKey+"=@"+f)
	}
	if f := c.Gateway.ValidationKeyFile; f != "" {
		out = append(out, keys.EnvValidationKey+"=@"+f)
	}
	return out
}
