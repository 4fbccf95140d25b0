package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/duo-confidential/duo-confidential/gateway/prompts"
)

func TestModelsPick(t *testing.T) {
	tests := []struct {
		name    string
		m       *Models
		f       prompts.Feature
		md      ModelMetadata
		want    string
		wantErr string
	}{
		{"feature entry", &Models{Default: "big", ByFeature: map[prompts.Feature]string{prompts.CodeCompletions: "small"}}, prompts.CodeCompletions, ModelMetadata{}, "small", ""},
		{"default for the rest", &Models{Default: "big", ByFeature: map[prompts.Feature]string{prompts.CodeCompletions: "small"}}, prompts.DuoChat, ModelMetadata{}, "big", ""},
		{"identifier ignored without an allowlist", &Models{Default: "big"}, prompts.DuoChat, ModelMetadata{Identifier: "custom_openai/other"}, "big", ""},
		{"allowed identifier honoured, provider prefix stripped", &Models{Default: "big", Allowed: []string{"other"}}, prompts.DuoChat, ModelMetadata{Identifier: "custom_openai/other"}, "other", ""},
		{"identifier outside the allowlist refused", &Models{Default: "big", Allowed: []string{"a", "b"}}, prompts.DuoChat, ModelMetadata{Identifier: "gpt-4o"}, "", `model "gpt-4o" is not allowed by the appliance; allowed: a, b`},
		{"no model configured", &Models{}, prompts.DuoChat, ModelMetadata{}, "", "no model is configured for duo_chat"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.m.Pick(tc.f, tc.md)
			if tc.wantErr != "" {
				var e *Error
				if !errors.As(err, &e) || !strings.Contains(e.Detail, tc.wantErr) {
					t.Fatalf("err %v, want detail %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("%q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// TestForeignEndpointLoggedOnce: GitLab's model_endpoint never decides where
// a call goes; it is logged once per host, without credentials.
func TestForeignEndpointLoggedOnce(t *testing.T) {
	var logs bytes.Buffer
	m := Models{Default: "big", Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	for range 3 {
		got, err := m.Pick(prompts.DuoChat, ModelMetadata{Endpoint: "https://user:secret@llm.example.com/v1", APIKey: "sk-live-123"})
		if err != nil || got != "big" {
			t.Fatalf("%q, %v", got, err)
		}
	}
	out := logs.String()
	if strings.Count(out, "model endpoint") != 1 || !strings.Contains(out, "endpoint_host=llm.example.com") {
		t.Errorf("want one log line naming the host:\n%s", out)
	}
	if strings.Contains(out, "secret") || strings.Contains(out, "sk-live") {
		t.Errorf("credentials in the log:\n%s", out)
	}
	if all := (&Models{Default: "b", ByFeature: map[prompts.Feature]string{prompts.DuoChat: "", prompts.CodeCompletions: "a"}, Allowed: []string{"c"}}).All(); strings.Join(all, ",") != "a,b,c" {
		t.Errorf("All() = %v", all)
	}
}

// TestManyIdentifiersStayBounded: any Duo user can send a new model
// identifier or endpoint host with every request; what the gateway
// remembers and logs about them stays bounded and clipped.
func TestManyIdentifiersStayBounded(t *testing.T) {
	var logs bytes.Buffer
	m := Models{Default: "big", Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	long := strings.Repeat("x", 4096)
	const n = 5000
	for i := range n {
		md := ModelMetadata{Identifier: fmt.Sprintf("openai/id-%d-%s\nlevel=ERROR forged", i, long)}
		if i%2 == 0 {
			md = ModelMetadata{Endpoint: fmt.Sprintf("https://h%d-%s.example/v1", i, long[:200])}
		}
		if _, err := m.Pick(prompts.CodeCompletions, md); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(m.warned.seen); got > maxWarnKeys {
		t.Fatalf("%d values remembered, want at most %d", got, maxWarnKeys)
	}
	out := logs.String()
	if lines := strings.Count(out, "\n"); lines > maxWarnKeys+5 {
		t.Fatalf("%d log lines for %d requests", lines, n)
	}
	if len(out) > (maxWarnKeys+5)*600 {
		t.Fatalf("%d bytes of log: values are not clipped", len(out))
	}
	if strings.Contains(out, "\nlevel=ERROR forged") {
		t.Fatal("a client value forged a log line")
	}
	if !strings.Contains(out, "not_logged=") {
		t.Fatalf("no summary of the values not logged:\n%.2000s", out)
	}
}
