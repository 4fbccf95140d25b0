package gitlabtest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func apiDo(t *testing.T, a *API, method, path, body, token string) (int, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, req)
	var m map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &m)
	return rec.Code, m
}

// TestAPIWorkflowRecords: the state machine refuses transitions Rails
// refuses (400), checkpoints must carry metadata and sort after the
// previous thread_ts, and GraphQL returns the latest one in the shape the
// query asks for.
func TestAPIWorkflowRecords(t *testing.T) {
	a := NewAPI("tok")
	if code, _ := apiDo(t, a, "GET", "/api/v4/user", "", "wrong"); code != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d", code)
	}
	for _, c := range []struct {
		event string
		code  int
	}{{"resume", 400}, {"start", 200}, {"start", 400}, {"require_tool_call_approval", 200}, {"resume", 200}, {"require_input", 200}} {
		if code, _ := apiDo(t, a, "PATCH", "/api/v4/ai/duo_workflows/workflows/5", `{"status_event":"`+c.event+`"}`, "tok"); code != c.code {
			t.Fatalf("%s: %d, want %d", c.event, code, c.code)
		}
	}
	cp := func(ts string) string {
		return `{"thread_ts":"` + ts + `","metadata":{},"checkpoint":{"channel_values":{"ui_chat_log":[],"status":"` + ts + `"}}}`
	}
	if code, _ := apiDo(t, a, "POST", "/api/v4/ai/duo_workflows/workflows/5/checkpoints", cp("b"), "tok"); code != 201 {
		t.Fatal(code)
	}
	if code, _ := apiDo(t, a, "POST", "/api/v4/ai/duo_workflows/workflows/5/checkpoints", cp("a"), "tok"); code != 400 {
		t.Fatalf("an older thread_ts was accepted: %d", code)
	}
	if code, _ := apiDo(t, a, "POST", "/api/v4/ai/duo_workflows/workflows/5/checkpoints", `{"thread_ts":"c","checkpoint":{}}`, "tok"); code != 400 {
		t.Fatalf("no metadata accepted: %d", code)
	}
	for query, field := range map[string]string{"latestCheckpoint": "latestCheckpoint", "firstCheckpoint": "firstCheckpoint"} {
		body, _ := json.Marshal(map[string]any{"query": "query { duoWorkflowWorkflows { nodes { statusName " + query + " { checkpoint } } } }",
			"variables": map[string]string{"workflowId": "gid://gitlab/Ai::DuoWorkflows::Workflow/5"}})
		code, m := apiDo(t, a, "POST", "/api/graphql", string(body), "tok")
		node := m["data"].(map[string]any)["duoWorkflowWorkflows"].(map[string]any)["nodes"].([]any)[0].(map[string]any)
		got := node[field].(map[string]any)["checkpoint"].(map[string]any)["channel_values"].(map[string]any)["status"]
		if code != 200 || node["statusName"] != "input_required" || got != "b" {
			t.Fatalf("%s: %d %v", field, code, node)
		}
	}
	if code, m := apiDo(t, a, "POST", "/api/v4/projects/1/issues/1/notes", `{"body":"hi"}`, "tok"); code != 201 || m["body"] != "hi" || len(a.Notes("issues/1")) != 2 {
		t.Fatalf("note: %d %v", code, m)
	}
}
