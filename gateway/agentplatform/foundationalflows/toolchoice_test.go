package foundationalflows

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
	"github.com/duo-confidential/duo-confidential/gateway/model"
	"google.golang.org/protobuf/types/known/structpb"
)

// TestForceToolChoiceOnTheWire: with Options.ForceToolChoice (config
// agent_platform.force_tool_choice) the chat completion requests the
// model client sends carry tool_choice "required" for an agent step and
// the named function for a one-off step; without it, "auto".
func TestForceToolChoiceOnTheWire(t *testing.T) {
	for _, tc := range []struct {
		force         bool
		agent, oneOff string
	}{
		{true, `"required"`, `{"function":{"name":"get_job_logs"},"type":"function"}`},
		{false, `"auto"`, `"auto"`},
	} {
		t.Run(fmt.Sprint("force=", tc.force), func(t *testing.T) {
			var mu sync.Mutex
			var choices []string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var body struct {
					ToolChoice json.RawMessage `json:"tool_choice"`
					Tools      []model.Tool    `json:"tools"`
				}
				b, _ := io.ReadAll(r.Body)
				if err := json.Unmarshal(b, &body); err != nil {
					t.Errorf("request body: %v", err)
				}
				mu.Lock()
				choices = append(choices, string(body.ToolChoice))
				mu.Unlock()
				name, args := "get_job_logs", `{"job_id":1}`
				for _, tl := range body.Tools {
					if tl.Function.Name == "final_response_tool" {
						name, args = "final_response_tool", `{"final_response":"logs needed"}`
					}
				}
				call, _ := json.Marshal(map[string]any{"choices": []any{map[string]any{"index": 0, "delta": map[string]any{"tool_calls": []any{
					map[string]any{"index": 0, "id": "c", "type": "function", "function": map[string]any{"name": name, "arguments": args}}}}}}})
				w.Header().Set("Content-Type", "text/event-stream")
				fmt.Fprintf(w, "data: %s\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\ndata: [DONE]\n\n", call)
			}))
			defer srv.Close()
			client, err := model.New(model.Options{Dial: func(ctx context.Context) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "tcp", srv.Listener.Addr().String())
			}})
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			flows, err := New(Options{Model: client, ForceToolChoice: tc.force})
			if err != nil {
				t.Fatal(err)
			}
			var doc map[string]any
			if err := json.Unmarshal([]byte(`{"version": "v1", "environment": "ambient",
 "prompts": [{"prompt_id": "p", "prompt_template": {"user": "Look at the failing job."}}],
 "components": [{"name": "look", "type": "AgentComponent", "prompt_id": "p", "toolset": ["get_job_logs"]},
   {"name": "read", "type": "OneOffComponent", "prompt_id": "p", "tool_name": "get_job_logs", "max_correction_attempts": 0}],
 "routers": [{"from": "look", "to": "read"}, {"from": "read", "to": "end"}], "flow": {"entry_point": "look"}}`), &doc); err != nil {
				t.Fatal(err)
			}
			cfg, err := structpb.NewStruct(doc)
			if err != nil {
				t.Fatal(err)
			}
			v := "v1"
			s := &ciSession{api: gitlabtest.NewAPI("t"), start: &contract.StartWorkflowRequest{WorkflowID: "9", Goal: "why did it fail?", FlowConfig: cfg, FlowConfigSchemaVersion: &v}}
			_, _ = flows.Inline.Run(context.Background(), s) // the job may not exist; only the requests matter
			mu.Lock()
			defer mu.Unlock()
			if len(choices) != 2 || choices[0] != tc.agent || choices[1] != tc.oneOff {
				t.Fatalf("tool_choice sent %v, want [%s %s]", choices, tc.agent, tc.oneOff)
			}
		})
	}
}
