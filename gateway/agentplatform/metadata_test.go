package agentplatform

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestParseModelMetadata(t *testing.T) {
	cases := []struct {
		in      string
		want    ModelMetadata
		wantErr error
		errText string
	}{
		{in: modelMetadataJSON, want: ModelMetadata{Provider: "openai", Name: "general", Identifier: "sandbox-model"}},
		{in: `{"provider":"openai","name":"gpt","identifier":"llama"}`, want: ModelMetadata{Provider: "openai", Name: "gpt", Identifier: "llama"}},
		{in: "", wantErr: ErrNoModelMetadata},
		{in: `{"provider":"gitlab","name":"claude"}`, wantErr: ErrGitLabModel},
		{in: `{"provider":"GitLab","identifier":"x"}`, wantErr: ErrGitLabModel},
		{in: `{"name":"general"}`, errText: "no provider"},
		{in: `{"provider":"openai"}`, errText: "names no model"},
		{in: `{"provider":1,"identifier":"x"}`, errText: "not a string"},
		{in: `[]`, errText: "not a JSON object"},
		{in: `{"provider":"openai","identifier":"x"} {}`, errText: "not a JSON object"},
		{in: `{"provider":"openai","identifier":"` + strings.Repeat("x", maxModelMetadataBytes) + `"}`, errText: "exceeds"},
	}
	for _, c := range cases {
		got, err := ParseModelMetadata(c.in)
		switch {
		case c.wantErr != nil && !errors.Is(err, c.wantErr):
			t.Errorf("%.40q: err %v, want %v", c.in, err, c.wantErr)
		case c.errText != "" && (err == nil || !strings.Contains(err.Error(), c.errText)):
			t.Errorf("%.40q: err %v, want %q", c.in, err, c.errText)
		case c.wantErr == nil && c.errText == "" && (err != nil || got != c.want):
			t.Errorf("%.40q: %+v %v", c.in, got, err)
		}
	}
}

// FuzzParseModelMetadata: never panics, never accepts a GitLab-hosted or
// nameless model, and never quotes the input (it holds an API key) in an
// error.
func FuzzParseModelMetadata(f *testing.F) {
	f.Add(modelMetadataJSON)
	f.Fuzz(func(t *testing.T, in string) {
		m, err := ParseModelMetadata(in)
		if err != nil {
			if len(in) > 8 && strings.Contains(err.Error(), in) {
				t.Fatalf("error quotes the header: %v", err)
			}
			return
		}
		if strings.EqualFold(m.Provider, "gitlab") || m.Provider == "" || (m.Identifier == "" && m.Name == "") {
			t.Fatalf("accepted %+v", m)
		}
	})
}

func TestServedModels(t *testing.T) {
	r := ServedModels([]string{"llama", "qwen"}, map[string]int{"qwen": 128000})
	m, err := r(context.Background(), ModelMetadata{Provider: "openai", Identifier: "qwen"})
	if err != nil || m.ID != "qwen" || m.ContextWindow != 128000 {
		t.Fatalf("%+v %v", m, err)
	}
	if m, err = r(context.Background(), ModelMetadata{Provider: "openai", Name: "llama"}); err != nil || m.ContextWindow != DefaultContextWindow {
		t.Fatalf("%+v %v", m, err)
	}
	if _, err = r(context.Background(), ModelMetadata{Provider: "openai", Identifier: "gpt-4o"}); err == nil || !strings.Contains(err.Error(), "llama, qwen") {
		t.Fatalf("unknown model: %v", err)
	}
}

func TestRequireToolCalling(t *testing.T) {
	tasks := map[string][]string{"chat": {"generate", "tool_calling"}, "code": {"generate"}}
	r := RequireToolCalling(ServedModels([]string{"chat", "code", "unknown-tasks"}, nil), func(_ context.Context, id string) []string { return tasks[id] })
	for id, ok := range map[string]bool{"chat": true, "code": false, "unknown-tasks": true} {
		_, err := r(context.Background(), ModelMetadata{Provider: "openai", Identifier: id})
		if (err == nil) != ok {
			t.Errorf("%s: %v", id, err)
		}
		if !ok && (err == nil || !strings.Contains(err.Error(), "cannot call tools")) {
			t.Errorf("%s: %v", id, err)
		}
	}
}
