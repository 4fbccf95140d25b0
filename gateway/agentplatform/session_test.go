package agentplatform

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flow"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// scriptFlow runs a function as the flow.
type scriptFlow func(ctx context.Context, s flow.Session) (flow.Outcome, error)

func (f scriptFlow) Run(ctx context.Context, s flow.Session) (flow.Outcome, error) { return f(ctx, s) }
func (f scriptFlow) Tools() []map[string]any                                       { return nil }

// echoHTTP sends one runHTTPRequest and finishes with its body as goal.
func echoHTTP(ctx context.Context, s flow.Session) (flow.Outcome, error) {
	r, err := s.Do(ctx, &contract.Action{Action: &contract.Action_RunHTTPRequest{RunHTTPRequest: &contract.RunHTTPRequest{Method: "GET", Path: "/api/v4/user"}}})
	if err != nil {
		return "", err
	}
	if err := s.Notify(ctx, &contract.NewCheckpoint{Status: "FINISHED", Goal: r.GetHttpResponse().GetBody()}); err != nil {
		return "", err
	}
	return flow.Finished, nil
}

func start(def string) *contract.ClientEvent {
	return &contract.ClientEvent{Response: &contract.ClientEvent_StartRequest{StartRequest: &contract.StartWorkflowRequest{WorkflowID: "7", WorkflowDefinition: def, Goal: "hello"}}}
}

func answer(a *contract.Action, body string) *contract.ClientEvent {
	return &contract.ClientEvent{Response: &contract.ClientEvent_ActionResponse{ActionResponse: &contract.ActionResponse{
		RequestID: a.RequestID, ResponseType: &contract.ActionResponse_HttpResponse{HttpResponse: &contract.HttpResponse{StatusCode: 200, Body: body}},
	}}}
}

func TestSessionRoundTrip(t *testing.T) {
	h := newHarness(t, harnessOptions{flows: map[string]flow.Flow{"chat": scriptFlow(echoHTTP)}})
	st, err := h.client.ExecuteWorkflow(h.ctx(h.railsMD("duo_chat")))
	if err != nil {
		t.Fatal(err)
	}
	must(t, st.Send(start("chat")))
	must(t, st.Send(&contract.ClientEvent{Response: &contract.ClientEvent_Heartbeat{Heartbeat: &contract.HeartbeatRequest{Timestamp: 1}}}))
	a, err := st.Recv()
	if err != nil || a.GetRunHTTPRequest().GetPath() != "/api/v4/user" || a.RequestID == "" {
		t.Fatalf("first action %v %v", a, err)
	}
	// An answer to an unknown id is ignored, the right one resolves.
	must(t, st.Send(answer(&contract.Action{RequestID: "nope"}, "wrong")))
	must(t, st.Send(answer(a, "root")))
	cp, err := st.Recv()
	if err != nil || cp.GetNewCheckpoint().GetGoal() != "root" {
		t.Fatalf("checkpoint %v %v", cp, err)
	}
	if _, err := st.Recv(); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
}

func TestSessionRefusals(t *testing.T) {
	h := newHarness(t, harnessOptions{flows: map[string]flow.Flow{"chat": scriptFlow(echoHTTP), "developer/v1": scriptFlow(echoHTTP)}})
	run := func(t *testing.T, md func() []string, first *contract.ClientEvent, modelHeader string) error {
		m := h.railsMD(md()...)
		if modelHeader != "-" {
			m.Set(HeaderModelMetadata, modelHeader)
		}
		if modelHeader == "" {
			m.Delete(HeaderModelMetadata)
		}
		st, err := h.client.ExecuteWorkflow(h.ctx(m))
		if err != nil {
			return err
		}
		if first != nil {
			must(t, st.Send(first))
		} else {
			must(t, st.CloseSend())
		}
		_, err = st.Recv()
		return err
	}
	scopes := func(s ...string) func() []string { return func() []string { return s } }
	cases := []struct {
		name   string
		scopes func() []string
		first  *contract.ClientEvent
		model  string
		code   codes.Code
		msg    string
	}{
		{"heartbeat first", scopes("duo_chat"), &contract.ClientEvent{Response: &contract.ClientEvent_Heartbeat{Heartbeat: &contract.HeartbeatRequest{}}}, "-", codes.InvalidArgument, "First message must be a startRequest"},
		{"half-close first", scopes("duo_chat"), nil, "-", codes.InvalidArgument, "First message must be a startRequest"},
		{"chat without duo_chat", scopes("duo_agent_platform"), start("chat"), "-", codes.PermissionDenied, "Unauthorized to execute chat"},
		{"flow without agent platform", scopes("duo_chat"), start("developer/v1"), "-", codes.PermissionDenied, "Unauthorized to execute developer/v1"},
		{"unknown flow", scopes("duo_agent_platform"), start("software_development"), "-", codes.InvalidArgument, `Unsupported workflow definition "software_development"`},
		{"no model metadata", scopes("duo_chat"), start("chat"), "", codes.FailedPrecondition, "GitLab sent no model metadata"},
		{"gitlab model", scopes("duo_chat"), start("chat"), `{"provider":"gitlab","name":"claude_sonnet"}`, codes.FailedPrecondition, "GitLab-hosted model"},
		{"bad json", scopes("duo_chat"), start("chat"), `{"provider":`, codes.FailedPrecondition, "not a JSON object"},
		{"other model", scopes("duo_chat"), start("chat"), `{"provider":"openai","name":"gpt","identifier":"custom_openai/other"}`, codes.FailedPrecondition, "does not serve"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := run(t, c.scopes, c.first, c.model)
			st := status.Convert(err)
			if st.Code() != c.code || !strings.Contains(st.Message(), c.msg) {
				t.Fatalf("got %v %q, want %v containing %q", st.Code(), st.Message(), c.code, c.msg)
			}
			if strings.Contains(st.Message(), "placeholder") {
				t.Fatal("status text quotes the model metadata")
			}
		})
	}
}

// waitingFlow sends one action and waits for its answer forever.
func waitingFlow() scriptFlow {
	return func(ctx context.Context, s flow.Session) (flow.Outcome, error) {
		_, err := s.Do(ctx, &contract.Action{Action: &contract.Action_RunHTTPRequest{RunHTTPRequest: &contract.RunHTTPRequest{Method: "GET", Path: "/x"}}})
		return "", err
	}
}

func TestSessionStopAndHalfClose(t *testing.T) {
	h := newHarness(t, harnessOptions{flows: map[string]flow.Flow{"chat": waitingFlow()}})
	for _, c := range []struct {
		name string
		end  func(st contract.DuoWorkflow_ExecuteWorkflowClient) error
		code codes.Code
	}{
		{"stopWorkflow", func(st contract.DuoWorkflow_ExecuteWorkflowClient) error {
			return st.Send(&contract.ClientEvent{Response: &contract.ClientEvent_StopWorkflow{StopWorkflow: &contract.StopWorkflowRequest{Reason: "WORKHORSE_WEBSOCKET_CLOSE_1000"}}})
		}, codes.OK},
		{"workhorse shutdown", func(st contract.DuoWorkflow_ExecuteWorkflowClient) error {
			return st.Send(&contract.ClientEvent{Response: &contract.ClientEvent_StopWorkflow{StopWorkflow: &contract.StopWorkflowRequest{Reason: "WORKHORSE_SERVER_SHUTDOWN"}}})
		}, codes.Unavailable},
		{"half-close", func(st contract.DuoWorkflow_ExecuteWorkflowClient) error { return st.CloseSend() }, codes.OK},
	} {
		t.Run(c.name, func(t *testing.T) {
			st, err := h.client.ExecuteWorkflow(h.ctx(h.railsMD("duo_chat")))
			must(t, err)
			must(t, st.Send(start("chat")))
			if _, err := st.Recv(); err != nil {
				t.Fatal(err)
			}
			must(t, c.end(st))
			cp, err := st.Recv()
			if err != nil || cp.GetNewCheckpoint().GetStatus() != "STOPPED" {
				t.Fatalf("want a STOPPED checkpoint, got %v %v", cp, err)
			}
			if c.name == "stopWorkflow" {
				// The client's stop is reported to GitLab too.
				a, err := st.Recv()
				hr := a.GetRunHTTPRequest()
				if err != nil || hr.GetMethod() != "PATCH" || hr.GetPath() != "/api/v4/ai/duo_workflows/workflows/7" || hr.GetBody() != `{"status_event":"stop"}` {
					t.Fatalf("want PATCH stop, got %v %v", a, err)
				}
				must(t, st.Send(answer(a, `{"workflow":{"id":"7","status":"stopped"}}`)))
			}
			_, err = st.Recv()
			if (c.code == codes.OK && err != io.EOF) || (c.code != codes.OK && status.Code(err) != c.code) {
				t.Fatalf("end %v, want %v", err, c.code)
			}
		})
	}
	// Cancelling the RPC ends the session (the flow's wait ends too).
	ctx, cancel := context.WithCancel(h.ctx(h.railsMD("duo_chat")))
	st, err := h.client.ExecuteWorkflow(ctx)
	must(t, err)
	must(t, st.Send(start("chat")))
	_, _ = st.Recv()
	cancel()
	deadline := time.Now().Add(10 * time.Second)
	for h.svc.ActiveSessions() != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := h.svc.ActiveSessions(); n != 0 {
		t.Fatalf("%d sessions still active after cancel", n)
	}
}

func TestSessionOversizeAction(t *testing.T) {
	big := strings.Repeat("x", MaxMessageBytes)
	var flowErr error
	h := newHarness(t, harnessOptions{flows: map[string]flow.Flow{"chat": scriptFlow(func(ctx context.Context, s flow.Session) (flow.Outcome, error) {
		_, flowErr = s.Do(ctx, &contract.Action{Action: &contract.Action_RunWriteFile{RunWriteFile: &contract.WriteFile{Filepath: "a", Contents: big}}})
		return "", flowErr
	})}})
	st, err := h.client.ExecuteWorkflow(h.ctx(h.railsMD("duo_chat")))
	must(t, err)
	_ = st.Send(start("chat")) // io.EOF when the refusal came first
	_, err = st.Recv()
	if s := status.Convert(err); s.Code() != codes.ResourceExhausted || s.Message() != "Outgoing message too large." {
		t.Fatalf("got %v", err)
	}
	if !errors.Is(flowErr, flow.ErrActionTooLarge) {
		t.Fatalf("flow saw %v", flowErr)
	}
}

func TestSessionLimitAndIdle(t *testing.T) {
	h := newHarness(t, harnessOptions{flows: map[string]flow.Flow{"chat": waitingFlow()}, maxSessions: 2, idle: 300 * time.Millisecond})
	var streams []contract.DuoWorkflow_ExecuteWorkflowClient
	for range 2 {
		st, err := h.client.ExecuteWorkflow(h.ctx(h.railsMD("duo_chat")))
		must(t, err)
		must(t, st.Send(start("chat")))
		if _, err := st.Recv(); err != nil {
			t.Fatal(err)
		}
		streams = append(streams, st)
	}
	st, err := h.client.ExecuteWorkflow(h.ctx(h.railsMD("duo_chat")))
	must(t, err)
	_ = st.Send(start("chat")) // io.EOF when the refusal came first
	_, err = st.Recv()
	if s := status.Convert(err); s.Code() != codes.ResourceExhausted || !strings.Contains(s.Message(), "Too many concurrent") {
		t.Fatalf("third session: %v", err)
	}
	// Both silent sessions end on their idle timeout.
	for _, st := range streams {
		_, err := st.Recv()
		if status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("idle session: %v", err)
		}
	}
}

// TestConcurrentSessions runs 200 sessions at once, each one action round
// trip.
func TestConcurrentSessions(t *testing.T) {
	h := newHarness(t, harnessOptions{flows: map[string]flow.Flow{"chat": scriptFlow(echoHTTP)}})
	md := h.railsMD("duo_chat")
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := h.client.ExecuteWorkflow(h.ctx(md))
			if err != nil {
				errs <- err
				return
			}
			if err := st.Send(start("chat")); err != nil {
				errs <- err
				return
			}
			a, err := st.Recv()
			if err != nil {
				errs <- err
				return
			}
			body := strings.Repeat("b", i%7+1)
			if err := st.Send(answer(a, body)); err != nil {
				errs <- err
				return
			}
			cp, err := st.Recv()
			if err != nil || cp.GetNewCheckpoint().GetGoal() != body {
				errs <- errors.New("wrong answer routed to a session")
				return
			}
			if _, err := st.Recv(); err != io.EOF {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestFlowConfigIDNamesTheFlow: newer clients name the flow by
// flowConfigId and leave workflowDefinition empty.
func TestFlowConfigIDNamesTheFlow(t *testing.T) {
	h := newHarness(t, harnessOptions{flows: map[string]flow.Flow{"chat": scriptFlow(echoHTTP)}})
	st, err := h.client.ExecuteWorkflow(h.ctx(h.railsMD("duo_agent_platform")))
	must(t, err)
	id := "chat"
	must(t, st.Send(&contract.ClientEvent{Response: &contract.ClientEvent_StartRequest{StartRequest: &contract.StartWorkflowRequest{WorkflowID: "7", FlowConfigId: &id}}}))
	// Scope check uses the resolved name: chat needs duo_chat.
	if _, err := st.Recv(); status.Code(err) != codes.PermissionDenied || !strings.Contains(status.Convert(err).Message(), "Unauthorized to execute chat") {
		t.Fatalf("got %v", err)
	}
}

// TestHeartbeatsKeepASessionAlive: heartbeats reset the idle timer, so a
// session that outlives its idle timeout by heartbeats alone stays up.
func TestHeartbeatsKeepASessionAlive(t *testing.T) {
	const idle = 2 * time.Second
	h := newHarness(t, harnessOptions{flows: map[string]flow.Flow{"chat": waitingFlow()}, idle: idle})
	st, err := h.client.ExecuteWorkflow(h.ctx(h.railsMD("duo_chat")))
	must(t, err)
	must(t, st.Send(start("chat")))
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(idle + idle/2); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		must(t, st.Send(&contract.ClientEvent{Response: &contract.ClientEvent_Heartbeat{Heartbeat: &contract.HeartbeatRequest{Timestamp: time.Now().UnixMilli()}}}))
	}
	if n := h.svc.ActiveSessions(); n != 1 {
		t.Fatalf("%d sessions after heartbeats past the idle timeout", n)
	}
	must(t, st.CloseSend())
	if cp, err := st.Recv(); err != nil || cp.GetNewCheckpoint().GetStatus() != "STOPPED" {
		t.Fatalf("%v %v", cp, err)
	}
}
