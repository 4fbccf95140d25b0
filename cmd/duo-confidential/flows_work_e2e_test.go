package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/executortools/localexec"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/workhorse"
	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
	"github.com/duo-confidential/duo-confidential/internal/testutil"
	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc/metadata"
)

// checkWorkspaceFlows runs the flows that change code through the real
// binary, each with a duo-cli-like executor (localexec) in a fresh git
// checkout of the demo project and the demo GitLab behind runHTTPRequest.
// The sandbox model's stand-in conventions drive every step from the tool
// results (proxy/sandbox/workflows.go): developer/v1 turns issue 1 into a
// merge request whose branch builds (node --check), fix_pipeline/v1 reads
// the failed job's log and changes the file it names, convert_to_gl_ci/v1
// writes a .gitlab-ci.yml with the Jenkinsfile's stages as jobs.
func checkWorkspaceFlows(ctx context.Context, t *testing.T, client contract.DuoWorkflowClient, md metadata.MD, api *gitlabtest.API) {
	tests := []struct {
		id, definition, goal string
		changed              string   // the one file the branch changes
		requests             []string // GitLab requests the flow made (prefixes)
		check                func(t *testing.T, content string)
	}{{
		id: "31", definition: "developer/v1", goal: "https://gitlab.demo/demo/shop/-/issues/1", changed: "src/cart.js",
		requests: []string{"GET /api/v4/projects/1/issues/1"},
		check: func(t *testing.T, content string) {
			if !strings.HasPrefix(content, "// Sandbox stand-in (NOT CONFIDENTIAL; no model was consulted): issue #1 \"Cart total ignores quantity\"") ||
				!strings.HasSuffix(content, gitlabtest.DemoFiles()["src/cart.js"]) {
				t.Fatalf("src/cart.js on the branch:\n%s", content)
			}
			nodeCheck(t, content)
		},
	}, {
		id: "32", definition: "fix_pipeline/v1", goal: fmt.Sprintf("https://gitlab.demo/demo/shop/-/pipelines/%d", gitlabtest.DemoFailedPipelineID), changed: "src/cart.js",
		requests: []string{fmt.Sprintf("GET /api/v4/projects/1/pipelines/%d/jobs", gitlabtest.DemoFailedPipelineID),
			"GET /api/v4/projects/1/jobs/401/trace"},
		check: func(t *testing.T, content string) {
			lines := strings.Split(content, "\n")
			// The log names src/cart.js:2: the stand-in's note sits above it.
			if len(lines) < 3 || !strings.HasPrefix(lines[1], "  // Sandbox stand-in (NOT CONFIDENTIAL") || lines[2] != "  return items.reduce((s, i) => s + i.price, 0)" {
				t.Fatalf("src/cart.js on the branch:\n%s", content)
			}
			nodeCheck(t, content)
		},
	}, {
		id: "33", definition: "convert_to_gl_ci/v1", goal: "Jenkinsfile", changed: ".gitlab-ci.yml",
		check: func(t *testing.T, content string) {
			var ci struct {
				Default struct {
					Image string `yaml:"image"`
				} `yaml:"default"`
				Stages  []string `yaml:"stages"`
				Install struct {
					Stage  string   `yaml:"stage"`
					Script []string `yaml:"script"`
				} `yaml:"install"`
				Test struct {
					Stage  string   `yaml:"stage"`
					Script []string `yaml:"script"`
				} `yaml:"test"`
			}
			if err := yaml.Unmarshal([]byte(content), &ci); err != nil {
				t.Fatalf(".gitlab-ci.yml does not parse: %v\n%s", err, content)
			}
			if ci.Default.Image != "node:22" || strings.Join(ci.Stages, ",") != "install,test" || ci.Install.Stage != "install" ||
				strings.Join(ci.Install.Script, ";") != "npm ci" || ci.Test.Stage != "test" || strings.Join(ci.Test.Script, ";") != "npm test" {
				t.Fatalf(".gitlab-ci.yml jobs %+v:\n%s", ci, content)
			}
		},
	}}
	for _, tt := range tests {
		t.Run(tt.definition, func(t *testing.T) {
			dir, origin := testutil.GitCheckout(t, gitlabtest.DemoFiles())
			api.FoundationalWorkflow(tt.id)
			ex := &localexec.Executor{Dir: dir, Env: testutil.GitEnv, Timeout: 30 * time.Second}
			s := workhorse.Session{Metadata: md, GitLab: api, OAuthToken: api.Token, Execute: func(a *contract.Action) *contract.ActionResponse {
				if localexec.Handles(a) {
					return ex.Execute(ctx, a)
				}
				return nil
			}}
			mrs := len(api.CreatedMergeRequests())
			var out strings.Builder
			st, err := runFlow(ctx, client, s, tt.id, tt.definition, tt.goal, &out)
			t.Logf("%s:\n%s", tt.definition, out.String())
			if err != nil || st != "FINISHED" || api.Workflow(tt.id).Status != "finished" {
				t.Fatalf("%s ended %s %v (workflow %s)", tt.definition, st, err, api.Workflow(tt.id).Status)
			}
			for _, want := range []string{"[tool] create_merge_request → success", "[agent] Sandbox stand-in (NOT CONFIDENTIAL", "[FINISHED]"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("output lacks %q", want)
				}
			}
			branch := "duo/workflow-" + tt.id
			created := api.CreatedMergeRequests()
			if len(created) != mrs+1 {
				t.Fatalf("%d merge requests created, want 1", len(created)-mrs)
			}
			mr := created[len(created)-1]
			if mr["source_branch"] != branch || mr["target_branch"] != "main" || !strings.HasPrefix(fmt.Sprint(mr["title"]), "Sandbox stand-in: ") {
				t.Fatalf("merge request %v", mr)
			}
			diff, err := exec.Command("git", "--git-dir", origin, "diff", "--name-only", "main", branch).CombinedOutput()
			if err != nil || strings.TrimSpace(string(diff)) != tt.changed {
				t.Fatalf("the branch changes %q (%v), want %s", diff, err, tt.changed)
			}
			tt.check(t, testutil.GitShow(t, origin, branch, tt.changed))
			reqs := api.Requests()
			for _, want := range tt.requests {
				if !slices.ContainsFunc(reqs, func(r string) bool { return strings.HasPrefix(r, want) }) {
					t.Errorf("GitLab did not see %q", want)
				}
			}
		})
	}
}

// nodeCheck is the in-process developer test's build check: the branch's
// JavaScript must pass node --check (skipped without node).
func nodeCheck(t *testing.T, source string) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Log("node not installed: the branch's build check is skipped")
		return
	}
	f := filepath.Join(t.TempDir(), "built.mjs")
	if err := os.WriteFile(f, []byte(source), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("node", "--check", f).CombinedOutput(); err != nil {
		t.Fatalf("the branch does not build: %v\n%s", err, out)
	}
}
