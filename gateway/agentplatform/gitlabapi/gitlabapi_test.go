package gitlabapi

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strings"
	"testing"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
)

// fakeExecutor answers runHTTPRequest actions like Workhorse would.
type fakeExecutor struct {
	handle func(r *contract.RunHTTPRequest) *contract.HttpResponse
	seen   []*contract.RunHTTPRequest
}

func (f *fakeExecutor) Do(_ context.Context, a *contract.Action) (*contract.ActionResponse, error) {
	r := a.GetRunHTTPRequest()
	f.seen = append(f.seen, r)
	return &contract.ActionResponse{RequestID: a.RequestID, ResponseType: &contract.ActionResponse_HttpResponse{HttpResponse: f.handle(r)}}, nil
}

func TestTruncationDetected(t *testing.T) {
	cases := []struct {
		name string
		resp *contract.HttpResponse
		want error
	}{
		{"old workhorse: silently cut at the limit", &contract.HttpResponse{StatusCode: 200, Body: `[{"a":"` + strings.Repeat("x", BodyLimit)}, ErrTruncated},
		{"current workhorse: error says so", &contract.HttpResponse{StatusCode: 200, Body: "[", Error: "response body exceeded size limit (4190208 bytes)"}, ErrTruncated},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cl := New(&fakeExecutor{handle: func(*contract.RunHTTPRequest) *contract.HttpResponse { return c.resp }})
			var out any
			if err := cl.JSON(context.Background(), "GET", "/api/v4/projects/1/issues", nil, &out); !errors.Is(err, c.want) {
				t.Fatalf("got %v", err)
			}
		})
	}
	// Just below the limit is a whole body.
	body := `"` + strings.Repeat("x", BodyLimit-3) + `"`
	cl := New(&fakeExecutor{handle: func(*contract.RunHTTPRequest) *contract.HttpResponse {
		return &contract.HttpResponse{StatusCode: 200, Body: body}
	}})
	var s string
	if err := cl.JSON(context.Background(), "GET", "/x", nil, &s); err != nil || len(s) != BodyLimit-3 {
		t.Fatalf("%v", err)
	}
}

func TestStatusError(t *testing.T) {
	cl := New(&fakeExecutor{handle: func(*contract.RunHTTPRequest) *contract.HttpResponse {
		return &contract.HttpResponse{StatusCode: 404, Body: `{"message":"404 Project Not Found"}`}
	}})
	err := cl.JSON(context.Background(), "GET", "/api/v4/projects/9?private_token=x", nil, nil)
	var se *StatusError
	if !errors.As(err, &se) || se.Status != 404 || se.Message != "404 Project Not Found" || strings.Contains(err.Error(), "private_token") {
		t.Fatalf("got %v", err)
	}
}

func TestWorkflowQueryByVersion(t *testing.T) {
	for v, want := range map[string]string{"18.7.2-ee": "firstCheckpoint", "18.8.0": "latestCheckpoint", "": "latestCheckpoint", "19.1.0": "latestCheckpoint", "17.11.0": "firstCheckpoint"} {
		if q := WorkflowQuery(v); !strings.Contains(q, want) {
			t.Errorf("%q: query lacks %s", v, want)
		}
	}
}

func TestWorkflowFetchAndStatus(t *testing.T) {
	cp := &Checkpoint{ID: "0190a0b0-0000-7000-8000-000000000001", ChannelValues: ChannelValues{Status: "INPUT_REQUIRED", UIChatLog: []UIChatLogEntry{{MessageType: "user", Content: "hi", MessageID: "user-1"}}}}
	cpJSON, _ := cp.Encode()
	f := &fakeExecutor{handle: func(r *contract.RunHTTPRequest) *contract.HttpResponse {
		switch {
		case r.Path == "/api/graphql":
			var req struct {
				Variables map[string]string `json:"variables"`
			}
			_ = json.Unmarshal([]byte(r.GetBody()), &req)
			if req.Variables["workflowId"] != "gid://gitlab/Ai::DuoWorkflows::Workflow/42" {
				return &contract.HttpResponse{StatusCode: 200, Body: `{"data":{"duoWorkflowWorkflows":{"nodes":[]}}}`}
			}
			return &contract.HttpResponse{StatusCode: 200, Body: `{"data":{"duoWorkflowWorkflows":{"nodes":[{"statusName":"input_required","projectId":"gid://gitlab/Project/5",
				"project":{"id":"gid://gitlab/Project/5","name":"demo"},"agentPrivilegesNames":["read_only_gitlab","read_write_gitlab"],
				"latestCheckpoint":{"threadTs":"t","checkpoint":` + string(cpJSON) + `}}]}}}`}
		case r.Method == "PATCH":
			if !strings.Contains(r.GetBody(), `"status_event":"bogus"`) {
				return &contract.HttpResponse{StatusCode: 200, Body: `{}`}
			}
			return &contract.HttpResponse{StatusCode: 400, Body: `{"message":"Can not bogus workflow"}`}
		}
		return &contract.HttpResponse{StatusCode: 404}
	}}
	cl := New(f)
	w, err := cl.Workflow(context.Background(), "42", "18.8.0")
	if err != nil {
		t.Fatal(err)
	}
	if w.ProjectID != "5" || w.StatusName != "input_required" || len(w.AgentPrivileges) != 2 || w.Checkpoint == nil || w.Checkpoint.ChannelValues.UIChatLog[0].MessageID != "user-1" {
		t.Fatalf("workflow %+v", w)
	}
	if _, err := cl.Workflow(context.Background(), "43", ""); err == nil {
		t.Fatal("missing workflow accepted")
	}
	if _, err := cl.Workflow(context.Background(), "1 OR 1", ""); err == nil {
		t.Fatal("non-numeric id accepted")
	}
	if err := cl.StatusEvent(context.Background(), "42", EventStart); err != nil {
		t.Fatal(err)
	}
	if err := cl.StatusEvent(context.Background(), "42", "bogus"); !errors.Is(err, ErrUnsupportedStatusEvent) {
		t.Fatalf("got %v", err)
	}
}

func TestCheckpointCodec(t *testing.T) {
	var ids []string
	for range 50 {
		ids = append(ids, NewThreadTS())
	}
	if !sort.StringsAreSorted(ids) {
		t.Fatal("thread_ts values do not sort by time")
	}
	cp := &Checkpoint{ID: ids[0], ChannelValues: ChannelValues{Start: &StartValues{Goal: "g"}, Status: "FINISHED",
		UIChatLog: []UIChatLogEntry{{MessageType: "agent", Content: "ok", MessageID: "m1"}}, Conversation: json.RawMessage(`[{"role":"user"}]`)}}
	b, err := cp.Encode()
	if err != nil {
		t.Fatal(err)
	}
	quoted, _ := json.Marshal(string(b))
	compressed, _ := json.Marshal(Compress(b))
	for name, raw := range map[string][]byte{"object": b, "json string": quoted, "compressed": compressed} {
		got, err := DecodeCheckpoint(raw)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got.ID != cp.ID || got.ChannelValues.Start.Goal != "g" || got.ChannelValues.UIChatLog[0].MessageID != "m1" || string(got.ChannelValues.Conversation) != `[{"role":"user"}]` {
			t.Fatalf("%s: %+v", name, got)
		}
	}
	// A zlib bomb stops at the bound.
	bomb, _ := json.Marshal(Compress([]byte(`{"id":"` + strings.Repeat("a", MaxCheckpointBytes+10) + `"}`)))
	if _, err := DecodeCheckpoint(bomb); err == nil {
		t.Fatal("oversized inflation accepted")
	}
	// Saving sends Rails' shape.
	f := &fakeExecutor{handle: func(*contract.RunHTTPRequest) *contract.HttpResponse {
		return &contract.HttpResponse{StatusCode: 201, Body: `{}`}
	}}
	if err := New(f).SaveCheckpoint(context.Background(), "42", cp, "parent", true); err != nil {
		t.Fatal(err)
	}
	var sent map[string]any
	_ = json.Unmarshal([]byte(f.seen[0].GetBody()), &sent)
	if f.seen[0].Path != "/api/v4/ai/duo_workflows/workflows/42/checkpoints" || sent["thread_ts"] != cp.ID || sent["parent_ts"] != "parent" || sent["compressed_checkpoint"] == nil || sent["metadata"] == nil {
		t.Fatalf("sent %v", sent)
	}
}

func FuzzDecodeCheckpoint(f *testing.F) {
	f.Add([]byte(`{"id":"x","channel_values":{"ui_chat_log":[]}}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		cp, err := DecodeCheckpoint(raw)
		if err != nil {
			return
		}
		b, err := cp.Encode()
		if err != nil {
			t.Fatal(err)
		}
		again, err := DecodeCheckpoint(b)
		if err != nil || again.ID != cp.ID || len(again.ChannelValues.UIChatLog) != len(cp.ChannelValues.UIChatLog) {
			t.Fatalf("re-encoding changed the checkpoint: %v", err)
		}
	})
}
