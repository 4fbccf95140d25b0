package model

import (
	"context"
	"net/http"
	"strings"
	"testing"
)

// TestStreamToolCalls assembles tool calls from streamed deltas the way
// vLLM and OpenAI send them (id and name first, arguments in pieces,
// several calls interleaved by index), and sends tools and tool_choice.
func TestStreamToolCalls(t *testing.T) {
	var sent sentRequest
	p := newStub(t, func(w http.ResponseWriter, r *http.Request) {
		record(t, &sent, r)
		sseHeaders(w)
		writeSSE(w,
			`{"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"Let me look."}}]}`,
			`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"get_issue","arguments":""}}]}}]}`,
			`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"project_id\":"}}]}}]}`,
			`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"get_project","arguments":"{}"}}]}}]}`,
			`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"5}"}}]}}]}`,
			`{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":10,"completion_tokens":5}}`,
			`[DONE]`)
	}, Options{})
	req := ChatRequest{Model: "m", Messages: []Message{{Role: "user", Content: "q"}, {Role: "assistant", ToolCalls: []ToolCall{{ID: "x", Type: "function", Function: ToolCallFunction{Name: "n", Arguments: "{}"}}}}, {Role: "tool", ToolCallID: "x", Content: "r"}},
		Tools: []Tool{{Type: "function", Function: ToolFunction{Name: "get_issue", Parameters: map[string]any{"type": "object"}}}}, ToolChoice: "auto"}
	var text strings.Builder
	res, err := p.client.ChatStream(context.Background(), req, func(d string) error { text.WriteString(d); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if text.String() != "Let me look." || res.FinishReason != "tool_calls" || len(res.ToolCalls) != 2 {
		t.Fatalf("result %+v", res)
	}
	if c := res.ToolCalls[0]; c.ID != "call_a" || c.Function.Name != "get_issue" || c.Function.Arguments != `{"project_id":5}` {
		t.Fatalf("call 0 %+v", c)
	}
	if c := res.ToolCalls[1]; c.ID != "call_b" || c.Function.Name != "get_project" {
		t.Fatalf("call 1 %+v", c)
	}
	if sent.Body["tool_choice"] != "auto" || len(sent.Body["tools"].([]any)) != 1 {
		t.Fatalf("sent %v", sent.Body)
	}
	msgs := sent.Body["messages"].([]any)
	if msgs[2].(map[string]any)["tool_call_id"] != "x" || msgs[1].(map[string]any)["tool_calls"] == nil {
		t.Fatalf("messages %v", msgs)
	}
}

func TestStreamToolCallBounds(t *testing.T) {
	for name, ev := range map[string]string{
		"index out of range": `{"choices":[{"index":0,"delta":{"tool_calls":[{"index":99,"id":"c","function":{"name":"x"}}]}}]}`,
		"huge arguments":     `{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c","function":{"name":"x","arguments":"` + strings.Repeat("a", maxToolArgumentBytes+1) + `"}}]}}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			p := newStub(t, func(w http.ResponseWriter, r *http.Request) {
				sseHeaders(w)
				writeSSE(w, ev, `[DONE]`)
			}, Options{MaxEventBytes: 4 << 20})
			_, err := p.client.ChatStream(context.Background(), ChatRequest{Model: "m"}, nil)
			if e, ok := err.(*Error); !ok || e.Status != 502 {
				t.Fatalf("got %v", err)
			}
		})
	}
}
