package contract

import (
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// TestWireNames pins the parts of the contract GitLab's clients depend on:
// the service's full name, and field numbers and JSON names that differ
// from protoc's defaults. A renumbered or renamed field breaks Workhorse
// silently, so it must break this test instead.
func TestWireNames(t *testing.T) {
	if got := DuoWorkflow_ServiceDesc.ServiceName; got != "DuoWorkflow" {
		t.Fatalf("service name %q, GitLab calls /DuoWorkflow/<RPC>", got)
	}
	if got := DuoWorkflow_ExecuteWorkflow_FullMethodName; got != "/DuoWorkflow/ExecuteWorkflow" {
		t.Fatalf("method %q", got)
	}
	cases := []struct {
		msg    protoreflect.ProtoMessage
		field  string
		number protoreflect.FieldNumber
		json   string
	}{
		{&ClientEvent{}, "startRequest", 1, "startRequest"},
		{&ClientEvent{}, "stopWorkflow", 4, "stopWorkflow"},
		{&StartWorkflowRequest{}, "workflowID", 2, "workflowID"},
		{&StartWorkflowRequest{}, "additional_context", 9, "additional_context"},
		{&StartWorkflowRequest{}, "preapproved_tools", 13, "preapproved_tools"},
		{&StartWorkflowRequest{}, "approval", 10, "approval"},
		{&StartWorkflowRequest{}, "resume_checkpoint_ts", 17, "resume_checkpoint_ts"},
		{&ActionResponse{}, "httpResponse", 4, "httpResponse"},
		{&Action{}, "requestID", 1, "requestID"},
		{&Action{}, "runHTTPRequest", 3, "runHTTPRequest"},
		{&Action{}, "newCheckpoint", 8, "newCheckpoint"},
		{&Action{}, "runMCPTool", 12, "runMCPTool"},
		{&Action{}, "trackLlmCallForSelfHosted", 16, "trackLlmCallForSelfHosted"},
		{&Grep{}, "search_directory", 1, "search_directory"},
		{&FindFiles{}, "name_pattern", 1, "name_pattern"},
		{&Mkdir{}, "directory_path", 1, "directory_path"},
		{&RunGitCommand{}, "repository_url", 3, "repository_url"},
		{&RunCommandAction{}, "program", 3, "program"},
		{&GenerateTokenRequest{}, "flow_config_id", 2, "flowConfigId"},
		{&GenerateTokenResponse{}, "expiresAt", 2, "expiresAt"},
		{&ListToolsResponse{}, "eval_dataset", 2, "eval_dataset"},
		{&Approval_Approved{}, "tool_args_json", 3, "tool_args_json"},
		{&HttpResponse{}, "statusCode", 2, "statusCode"},
	}
	for _, c := range cases {
		fd := c.msg.ProtoReflect().Descriptor().Fields().ByName(protoreflect.Name(c.field))
		if fd == nil {
			t.Errorf("%T has no field %s", c.msg, c.field)
			continue
		}
		if fd.Number() != c.number || fd.JSONName() != c.json {
			t.Errorf("%T.%s = #%d json %q, want #%d json %q", c.msg, c.field, fd.Number(), fd.JSONName(), c.number, c.json)
		}
	}
	if n := (&ActionResponse{}).ProtoReflect().Descriptor().ReservedRanges(); n.Len() == 0 || !n.Has(2) {
		t.Error("ActionResponse field 2 (legacy response) must stay reserved")
	}
}

// TestWorkhorseFrame decodes a websocket frame the way Workhorse does
// (protojson, proto names, unknown fields discarded) and re-encodes an
// action with proto names.
func TestWorkhorseFrame(t *testing.T) {
	frame := `{"startRequest":{"workflowID":"7","goal":"hi","clientCapabilities":["incremental_streaming"],
	"additional_context":[{"category":"file","content":"x"}],"preapproved_tools":["get_issue"],"futureField":1}}`
	var ev ClientEvent
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal([]byte(frame), &ev); err != nil {
		t.Fatal(err)
	}
	s := ev.GetStartRequest()
	if s.GetWorkflowID() != "7" || len(s.GetAdditionalContext()) != 1 || s.GetPreapprovedTools()[0] != "get_issue" {
		t.Fatalf("decoded %v", s)
	}
	a := &Action{RequestID: "r1", Action: &Action_Grep{Grep: &Grep{SearchDirectory: "src", Pattern: "x"}}}
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	var back Action
	if err := protojson.Unmarshal(b, &back); err != nil || back.GetGrep().GetSearchDirectory() != "src" {
		t.Fatalf("round trip %s: %v", b, err)
	}
}

func TestActionKind(t *testing.T) {
	for want, a := range map[string]*Action{
		"runHTTPRequest": {Action: &Action_RunHTTPRequest{RunHTTPRequest: &RunHTTPRequest{}}},
		"newCheckpoint":  {Action: &Action_NewCheckpoint{NewCheckpoint: &NewCheckpoint{}}},
		"none":           {},
	} {
		if got := a.Kind(); got != want {
			t.Errorf("Kind() = %q, want %q", got, want)
		}
	}
	if (*Action)(nil).Kind() != "none" {
		t.Error("nil action")
	}
}
