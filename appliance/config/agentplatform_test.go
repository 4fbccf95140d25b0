package config

import "testing"

func TestAgentPlatformContextWindows(t *testing.T) {
	c := mustParse(t, "agent_platform:\n  context_window: 65536\n  model_context_windows: [\"qwen3-coder=131072\", \" llama = 8192 \"]\n")
	a := c.AgentPlatform
	for model, want := range map[string]int{"qwen3-coder": 131072, "llama": 8192, "other": 65536} {
		if got := a.ContextWindowFor(model); got != want {
			t.Errorf("ContextWindowFor(%q) = %d, want %d", model, got, want)
		}
	}
	if got := mustParse(t, "").AgentPlatform.ContextWindowFor("any"); got != DefaultAgentPlatformContextWindow {
		t.Errorf("default window %d, want %d", got, DefaultAgentPlatformContextWindow)
	}
}

func TestAgentPlatformContextWindowErrors(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"no equals", "agent_platform:\n  model_context_windows: [\"qwen\"]\n", []string{"agent_platform.model_context_windows", "MODEL=TOKENS"}},
		{"no model", "agent_platform:\n  model_context_windows: [\"=8192\"]\n", []string{"agent_platform.model_context_windows", "MODEL=TOKENS"}},
		{"not a number", "agent_platform:\n  model_context_windows: [\"qwen=lots\"]\n", []string{"agent_platform.model_context_windows", "MODEL=TOKENS"}},
		{"too small", "agent_platform:\n  model_context_windows: [\"qwen=100\"]\n", []string{"agent_platform.model_context_windows", "between 4096 and 10000000"}},
		{"twice", "agent_platform:\n  model_context_windows: [\"qwen=8192\", \"qwen=16384\"]\n", []string{"agent_platform.model_context_windows", "listed twice"}},
		{"global too small", "agent_platform:\n  context_window: 10\n", []string{"agent_platform.context_window", "between 4096 and 10000000"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseStr(tc.yaml)
			wantErr(t, err, tc.want...)
		})
	}
}

// TestAgentPlatformForceToolChoice: the knob is off unless set, in the file
// or the environment, and only a boolean is accepted.
func TestAgentPlatformForceToolChoice(t *testing.T) {
	tests := []struct {
		name, yaml string
		env        []string
		want       bool
	}{
		{"default", "", nil, false},
		{"on in the file", "agent_platform:\n  force_tool_choice: true\n", nil, true},
		{"off in the file", "agent_platform:\n  force_tool_choice: false\n", nil, false},
		{"on by environment", "", []string{"DUO_CONFIDENTIAL_AGENT_PLATFORM_FORCE_TOOL_CHOICE=true"}, true},
		{"environment wins", "agent_platform:\n  force_tool_choice: true\n", []string{"DUO_CONFIDENTIAL_AGENT_PLATFORM_FORCE_TOOL_CHOICE=false"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := mustParse(t, tc.yaml, tc.env...).AgentPlatform.ForceToolChoice; got != tc.want {
				t.Errorf("force_tool_choice = %v, want %v", got, tc.want)
			}
		})
	}
	_, err := parseStr("agent_platform:\n  force_tool_choice: sometimes\n")
	wantErr(t, err, "agent_platform.force_tool_choice")
}
