package foundationalflows

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
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

// allPrivileges are a foundational flow's privileges, all pre-approved
// (as Rails configures foundational flows).
var allPrivileges = []string{"read_write_files", "use_git", "run_commands", "read_write_gitlab", "read_only_gitlab"}

var gitEnv = []string{"GIT_AUTHOR_NAME=Duo", "GIT_AUTHOR_EMAIL=duo@example.com", "GIT_COMMITTER_NAME=Duo", "GIT_COMMITTER_EMAIL=duo@example.com", "GIT_CONFIG_GLOBAL=/dev/null"}

// demoCheckout is a git checkout of the demo project with a bare origin.
func demoCheckout(t *testing.T, files map[string]string) (dir, origin string) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	base := t.TempDir()
	dir, origin = filepath.Join(base, "shop"), filepath.Join(base, "origin.git")
	git := func(d string, args ...string) {
		cmd := exec.Command("git", args...)
		cmd.Dir = d
		cmd.Env = append(os.Environ(), gitEnv...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	for p, c := range files {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git(base, "init", "-q", "--bare", "-b", "main", origin)
	git(dir, "init", "-q", "-b", "main")
	git(dir, "add", ".")
	git(dir, "commit", "-q", "-m", "init")
	git(dir, "remote", "add", "origin", origin)
	git(dir, "push", "-q", "origin", "main")
	return dir, origin
}

func showBranchFile(t *testing.T, origin, branch, file string) string {
	t.Helper()
	out, err := exec.Command("git", "--git-dir", origin, "show", branch+":"+file).CombinedOutput()
	if err != nil {
		t.Fatalf("git show %s:%s: %v\n%s", branch, file, err, out)
	}
	return string(out)
}

func newFlows(t *testing.T, m *scripted) *Flows {
	t.Helper()
	f, err := New(Options{Model: m})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func newExecutor(dir string) *localexec.Executor { return &localexec.Executor{Dir: dir, Env: gitEnv} }

func gitlabClient(s *ciSession) *gitlabapi.Client { return gitlabapi.New(s) }

func fmtFloat(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }
