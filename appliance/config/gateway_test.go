package config

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"testing"
)

func TestGatewayConfig(t *testing.T) {
	on := "gateway:\n  gitlab_url: https://gitlab.example.com\n  models:\n    default: big-model\n"
	c := mustParse(t, on+"    code_completions: small-code\n")
	if !c.Gateway.Enabled() || c.Gateway.Models.CodeCompletions != "small-code" || c.Gateway.Timeouts.Check != DefaultGatewayCheck {
		t.Errorf("got %+v", c.Gateway)
	}
	if mustParse(t, "").Gateway.Enabled() {
		t.Error("the gateway runs without gateway.gitlab_url")
	}
	c = mustParse(t, "", "DUO_CONFIDENTIAL_GATEWAY_GITLAB_URL=https://gl.example", "DUO_CONFIDENTIAL_GATEWAY_MODELS_DEFAULT=m",
		"DUO_CONFIDENTIAL_GATEWAY_ALLOWED_MODELS=a,b", "DUO_CONFIDENTIAL_GATEWAY_TIMEOUTS_CHAT=5m")
	if c.Gateway.GitLabURL != "https://gl.example" || len(c.Gateway.AllowedModels) != 2 || c.Gateway.Timeouts.Chat.Minutes() != 5 {
		t.Errorf("environment overrides: %+v", c.Gateway)
	}
}

func TestGatewayConfigErrors(t *testing.T) {
	on := "gateway:\n  gitlab_url: https://gitlab.example.com\n  models:\n    default: big-model\n"
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"plain http GitLab", "gateway:\n  gitlab_url: http://gitlab.example.com\n  models:\n    default: m\n", []string{"gateway.gitlab_url", "must use https"}},
		{"trailing slash", "gateway:\n  gitlab_url: https://gitlab.example.com/\n  models:\n    default: m\n", []string{"gateway.gitlab_url", "trailing slash"}},
		{"no default model", "gateway:\n  gitlab_url: https://gitlab.example.com\n", []string{"gateway.models.default", "/v1/models"}},
		{"bad model id", on + "    duo_chat: \"two words\"\n", []string{"gateway.models.duo_chat", "not a model id"}},
		{"bad allowed model", on + "  allowed_models: [\"\"]\n", []string{"gateway.allowed_models[0]"}},
		{"completion format", on + "  completion_format: fim\n", []string{"gateway.completion_format", "must be one of"}},
		{"completion timeout above Workhorse's", on + "  timeouts:\n    completions: 60s\n", []string{"gateway.timeouts.completions", "54s"}},
		{"check timeout above GitLab's 3 s", on + "  timeouts:\n    check: 3s\n", []string{"gateway.timeouts.check"}},
		{"chat timeout above 600 s", on + "  timeouts:\n    chat: 11m\n", []string{"gateway.timeouts.chat"}},
		{"listen", on + "  listen: nowhere\n", []string{"gateway.listen", "HOST:PORT"}},
		{"body limit", on + "  max_request_bytes: 10\n", []string{"gateway.max_request_bytes"}},
		{"validation key alone", on + "  validation_key_file: /etc/k.pem\n", []string{"gateway.validation_key_file", "signing_key_file"}},
		{"relative key file", on + "  signing_key_file: k.pem\n", []string{"gateway.signing_key_file", "absolute"}},
		{"missing key file", on + "  signing_key_file: /nonexistent/k.pem\n", []string{"gateway.signing_key_file"}},
		{"unknown key", on + "  modles: {}\n", []string{"modles"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseStr(tc.yaml)
			wantErr(t, err, tc.want...)
		})
	}
}

func TestGatewayKeyFiles(t *testing.T) {
	dir := t.TempDir()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	pemKey := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	good := writeFile(t, dir, "sign.pem", pemKey, 0o600)
	open := writeFile(t, dir, "open.pem", pemKey, 0o644)
	junk := writeFile(t, dir, "junk.pem", "not a key", 0o600)
	on := "gateway:\n  gitlab_url: https://gitlab.example.com\n  models:\n    default: m\n"
	c := mustParse(t, on+"  signing_key_file: "+good+"\n")
	env := c.GatewayKeyEnv([]string{"AIGW_SELF_SIGNED_JWT__SIGNING_KEY=from-env"})
	if last := env[len(env)-1]; last != "AIGW_SELF_SIGNED_JWT__SIGNING_KEY=@"+good {
		t.Errorf("the configured file does not take precedence: %v", env)
	}
	_, err = parseStr(on + "  signing_key_file: " + open + "\n")
	wantErr(t, err, "gateway.signing_key_file", "0600")
	_, err = parseStr(on + "  signing_key_file: " + junk + "\n")
	wantErr(t, err, "gateway.signing_key_file")
}
