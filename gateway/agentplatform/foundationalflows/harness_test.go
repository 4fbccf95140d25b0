package foundationalflows

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/executortools/localexec"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flow"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/gitlabapi"
	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
	"github.com/duo-confidential/duo-confidential/gateway/model"
	"github.com/duo-confidential/duo-confidential/internal/testutil"
)

// ciSession plays Workhorse plus a duo-cli executor in a CI job:
// runHTTPRequest goes to the demo GitLab API, file/git/command actions to
// a local executor.
type ciSession struct {
	mu      sync.Mutex
	start   *contract.StartWorkflowRequest
	api     *gitlabtest.API
	ex      *localexec.Executor
	actions []*contract.Action
	last    *contract.NewCheckpoint
}

func (s *ciSession) Start() *contract.StartWorkflowRequest { return s.start }
func (s *ciSession) Caller() flow.Caller {
	return flow.Caller{ClientType: "gitlab-rails", Model: flow.Model{ID: "m", ContextWindow: 64000}}
}
func (s *ciSession) Notify(_ context.Context, c *contract.NewCheckpoint) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last = c
	return nil
}
func (s *ciSession) Do(ctx context.Context, a *contract.Action) (*contract.ActionResponse, error) {
	s.mu.Lock()
	s.actions = append(s.actions, a)
	s.mu.Unlock()
	if h := a.GetRunHTTPRequest(); h != nil {
		req := httptest.NewRequest(h.GetMethod(), h.GetPath(), strings.NewReader(h.GetBody()))
		req.Header.Set("Authorization", "Bearer t")
		rec := httptest.NewRecorder()
		s.api.ServeHTTP(rec, req)
		return &contract.ActionResponse{ResponseType: &contract.ActionResponse_HttpResponse{HttpResponse: &contract.HttpResponse{StatusCode: int32(rec.Code), Body: rec.Body.String()}}}, nil
	}
	if s.ex != nil && localexec.Handles(a) {
		return s.ex.Execute(ctx, a), nil
	}
	return &contract.ActionResponse{ResponseType: &contract.ActionResponse_PlainTextResponse{PlainTextResponse: &contract.PlainTextResponse{Error: "no executor"}}}, nil
}

// scripted answers each model call with the next tool call(s).
type scripted struct {
	mu    sync.Mutex
	steps [][]model.ToolCall
	reqs  []model.ChatRequest
}

func (m *scripted) ChatStream(_ context.Context, r model.ChatRequest, _ func(string) error) (model.Result, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reqs = append(m.reqs, r)
	if len(m.steps) == 0 {
		return model.Result{Text: "I have nothing more to do."}, nil
	}
	s := m.steps[0]
	m.steps = m.steps[1:]
	return model.Result{ToolCalls: s, Usage: model.Usage{PromptTokens: 1000, CompletionTokens: 50}}, nil
}

// tc is one tool call with arguments given as a map.
func tc(name string, args map[string]any) []model.ToolCall {
	b, _ := json.Marshal(args)
	return []model.ToolCall{{ID: "call_" + name, Type: "function", Function: model.ToolCallFunction{Name: name, Arguments: string(b)}}}
}

func final(text string) []model.ToolCall {
	return tc("final_response_tool", map[string]any{"final_response": text})
}

func newFlows(t *testing.T, m *scripted) *Flows {
	t.Helper()
	f, err := New(Options{Model: m})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func newExecutor(dir string) *localexec.Executor {
	return &localexec.Executor{Dir: dir, Env: testutil.GitEnv}
}

func gitlabClient(s *ciSession) *gitlabapi.Client { return gitlabapi.New(s) }

func fmtFloat(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }
