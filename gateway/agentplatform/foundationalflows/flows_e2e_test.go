package foundationalflows

import (
	"context"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/codereview"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flow"
	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
	"github.com/duo-confidential/duo-confidential/internal/testutil"
)

// TestCodeReviewMultiFile: code_review/v1 on the demo's two-file merge
// request builds the annotated context, lets the agent read a file, fixes
// a review without a <review> block by correction, drops comments off the
// diff, and posts through add_comments a review that GitLab's parser rules
// accept.
func TestCodeReviewMultiFile(t *testing.T) {
	api := gitlabtest.NewAPI("t")
	api.FoundationalWorkflow("11")
	review := `<review>
<summary>Discounts work, but the total breaks for items without quantity.</summary>
<comment file="src/cart.js" old_line="" new_line="4">
` + "`i.quantity`" + ` is undefined for items added before this change, so the sum becomes NaN. Default it: ` + "`(i.quantity ?? 1)`" + `.
</comment>
<comment file="src/discount.js" old_line="" new_line="5">
Use ` + "`=== undefined`" + ` (or ` + "`!(code in codes)`" + `): ` + "`==`" + ` also matches null.
</comment>
<comment file="src/discount.js" old_line="" new_line="40">Not a line of the diff.</comment>
<comment file="src/tax.js" old_line="" new_line="1">Not a file of the diff.</comment>
</review>`
	model := &scripted{}
	model.steps = append(model.steps,
		tc("get_repository_file", map[string]any{"file_path": "src/cart.js"}),
		final("cart.js callers pass items without quantity (README example)."),
		tc("post_duo_code_review", map[string]any{"project_id": "1", "merge_request_iid": 2, "review_output": "Looks good to me."}),
		tc("post_duo_code_review", map[string]any{"project_id": "1", "merge_request_iid": 2, "review_output": review}),
	)
	s := &ciSession{api: api, start: &contract.StartWorkflowRequest{WorkflowID: "11", WorkflowDefinition: "code_review/v1", Goal: "2"}}
	out, err := newFlows(t, model).ByDefinition["code_review/v1"].Run(context.Background(), s)
	if err != nil || out != flow.Finished {
		t.Fatalf("%v %v", out, err)
	}
	posts := api.ReviewPosts()
	if len(posts) != 1 {
		t.Fatalf("%d reviews posted", len(posts))
	}
	_, files, err := codereview.Fetch(context.Background(), gitlabClient(s), "1", "2")
	if err != nil {
		t.Fatal(err)
	}
	if err := codereview.Check(posts[0].ReviewOutput, codereview.LinesByFile(files)); err != nil {
		t.Fatalf("posted review fails GitLab's rules: %v\n%s", err, posts[0].ReviewOutput)
	}
	p := codereview.Parse(posts[0].ReviewOutput)
	if len(p.Comments) != 2 || p.Comments[0].File != "src/cart.js" || p.Comments[1].NewLine != 5 || !strings.HasPrefix(p.Summary, "Discounts work") {
		t.Fatalf("posted %+v", p)
	}
	if notes := api.Notes("merge_requests/2"); len(notes) != 3 || !strings.HasPrefix(notes[1]["body"].(string), "src/cart.js:4 — ") {
		t.Fatalf("merge request notes %v", notes)
	}
	if posts[0].WorkflowID != "11" || asString(posts[0].MergeRequestIID) != "2" {
		t.Fatalf("post %+v", posts[0])
	}
	// The publish step saw the annotated diff and the explorer's notes; the
	// correction request saw why the first output was refused.
	pub := model.reqs[2].Messages
	if !strings.Contains(pub[len(pub)-1].Content, "   5 | +  if (rate == undefined) return 0") || !strings.Contains(pub[len(pub)-1].Content, "README example") {
		t.Fatalf("publish prompt:\n%s", pub[len(pub)-1].Content)
	}
	if !strings.Contains(pub[len(pub)-1].Content, "== whole file src/cart.js (source branch") || strings.Contains(pub[len(pub)-1].Content, "== whole file src/discount.js") {
		t.Fatal("the review context lacks the modified file's whole version (or has the new file twice)")
	}
	if !slices.Contains(api.Requests(), "GET /api/v4/projects/1/repository/files/src%2Fcart.js/raw?ref=discounts") {
		t.Fatalf("whole file not read at the source branch: %v", api.Requests())
	}
	retry := model.reqs[3].Messages
	if !strings.Contains(retry[len(retry)-1].Content, "wrapped in <review>") {
		t.Fatalf("correction text: %s", retry[len(retry)-1].Content)
	}
	if api.Workflow("11").Status != "finished" || s.last.GetStatus() != "FINISHED" {
		t.Fatalf("status %s %s", api.Workflow("11").Status, s.last.GetStatus())
	}
}

func asString(v any) string {
	switch x := v.(type) {
	case float64:
		return fmtFloat(x)
	case string:
		return x
	}
	return ""
}

// TestDeveloperFlow: developer/v1 reads the issue, changes the code on a
// branch in the executor's checkout, pushes it and opens a merge request
// whose branch builds.
func TestDeveloperFlow(t *testing.T) {
	dir, origin := testutil.GitCheckout(t, map[string]string{
		"README.md":   "# Demo shop\n",
		"src/cart.js": "export function total(items) {\n  return items.reduce((s, i) => s + i.price, 0)\n}\n",
	})
	api := gitlabtest.NewAPI("t")
	api.FoundationalWorkflow("7")
	check := []any{"src/cart.js"}
	prog := "node"
	if _, err := exec.LookPath("node"); err != nil {
		prog = "cat"
	} else {
		check = []any{"--check", "src/cart.js"}
	}
	model := &scripted{}
	model.steps = append(model.steps,
		tc("get_issue", map[string]any{"issue_iid": 1}),
		tc("run_git_command", map[string]any{"command": "checkout", "args": "-b duo/workflow-7"}),
		tc("read_file", map[string]any{"file_path": "src/cart.js"}),
		tc("edit_file", map[string]any{"file_path": "src/cart.js", "old_str": "s + i.price, 0", "new_str": "s + i.price * i.quantity, 0"}),
		tc("run_command", map[string]any{"program": prog, "args": check}),
		tc("run_git_command", map[string]any{"command": "add", "args": "src/cart.js"}),
		tc("run_git_command", map[string]any{"command": "commit", "args": "-m 'Multiply price by quantity in the cart total'"}),
		tc("run_git_command", map[string]any{"command": "push", "args": "-u origin duo/workflow-7"}),
		final("Pushed duo/workflow-7: total multiplies price by quantity."),
		tc("create_merge_request", map[string]any{"source_branch": "duo/workflow-7", "title": "Cart total counts quantity", "description": "Closes #1."}),
	)
	s := &ciSession{api: api, ex: newExecutor(dir), start: &contract.StartWorkflowRequest{WorkflowID: "7", WorkflowDefinition: "developer/v1", Goal: "https://gitlab.demo/demo/shop/-/issues/1"}}
	out, err := newFlows(t, model).ByDefinition["developer/v1"].Run(context.Background(), s)
	if err != nil || out != flow.Finished {
		t.Fatalf("%v %v", out, err)
	}
	if got := testutil.GitShow(t, origin, "duo/workflow-7", "src/cart.js"); !strings.Contains(got, "i.price * i.quantity") {
		t.Fatalf("branch file:\n%s", got)
	}
	mrs := api.CreatedMergeRequests()
	if len(mrs) != 1 || mrs[0]["source_branch"] != "duo/workflow-7" || mrs[0]["target_branch"] != "main" {
		t.Fatalf("merge requests %v", mrs)
	}
	if prog == "node" {
		if out, err := exec.Command("sh", "-c", "git --git-dir "+origin+" show duo/workflow-7:src/cart.js > "+dir+"/built.mjs && node --check "+dir+"/built.mjs").CombinedOutput(); err != nil {
			t.Fatalf("branch does not build: %v %s", err, out)
		}
	}
	// The issue text reached the model before it changed anything.
	if !strings.Contains(model.reqs[1].Messages[len(model.reqs[1].Messages)-1].Content, "Cart total ignores quantity") {
		t.Fatal("issue not fed back to the model")
	}
}

// TestFixPipelineFlow: fix_pipeline/v1 reads the failed job's log and
// changes the file the log points at.
func TestFixPipelineFlow(t *testing.T) {
	dir, origin := testutil.GitCheckout(t, map[string]string{
		"src/cart.js":        "export function total(items) {\n  return items.reduce((s, i) => s + i.price, 0)\n}\n",
		"test/cart.test.js":  "import test from 'node:test'\n",
		"package.json":       "{\"name\":\"shop\"}\n",
		".gitlab-ci.yml":     "test:\n  script: npm test\n",
		"docs/unrelated.txt": "x\n",
	})
	api := gitlabtest.NewAPI("t")
	api.FoundationalWorkflow("8")
	model := &scripted{}
	model.steps = append(model.steps,
		tc("get_pipeline_failing_jobs", map[string]any{"pipeline_id": gitlabtest.DemoFailedPipelineID}),
		tc("get_job_logs", map[string]any{"job_id": 401}),
		final("Job test fails: src/cart.js:2 total ignores quantity (4 !== 8). Multiply price by quantity."),
		tc("run_git_command", map[string]any{"command": "checkout -b duo/workflow-8"}),
		tc("edit_file", map[string]any{"file_path": "src/cart.js", "old_str": "s + i.price,", "new_str": "s + i.price * i.quantity,"}),
		tc("run_git_command", map[string]any{"command": "commit", "args": "-am 'Fix cart total (pipeline 301)'"}),
		tc("run_git_command", map[string]any{"command": "push", "args": "-u origin duo/workflow-8"}),
		final("Pushed duo/workflow-8."),
		tc("create_merge_request", map[string]any{"source_branch": "duo/workflow-8", "title": "Fix failing cart test"}),
	)
	s := &ciSession{api: api, ex: newExecutor(dir), start: &contract.StartWorkflowRequest{WorkflowID: "8", WorkflowDefinition: "fix_pipeline/v1", Goal: "https://gitlab.demo/demo/shop/-/pipelines/301"}}
	out, err := newFlows(t, model).ByDefinition["fix_pipeline/v1"].Run(context.Background(), s)
	if err != nil || out != flow.Finished {
		t.Fatalf("%v %v", out, err)
	}
	diag := model.reqs[2].Messages
	if !strings.Contains(diag[len(diag)-1].Content, "4 !== 8") {
		t.Fatal("the job log did not reach the model")
	}
	fixPrompt := model.reqs[3].Messages
	if !strings.Contains(fixPrompt[len(fixPrompt)-1].Content, "src/cart.js:2") {
		t.Fatal("the diagnosis did not reach the fix step")
	}
	changed, err := exec.Command("git", "--git-dir", origin, "diff", "--name-only", "main", "duo/workflow-8").CombinedOutput()
	if err != nil || strings.TrimSpace(string(changed)) != "src/cart.js" {
		t.Fatalf("changed files %q %v", changed, err)
	}
	if len(api.CreatedMergeRequests()) != 1 {
		t.Fatal("no merge request")
	}
}

// TestConvertToGitLabCI: convert_to_gl_ci/v1 writes .gitlab-ci.yml from a
// Jenkinsfile on a branch and opens a merge request.
func TestConvertToGitLabCI(t *testing.T) {
	dir, origin := testutil.GitCheckout(t, map[string]string{
		"Jenkinsfile": "pipeline {\n  agent { docker { image 'node:22' } }\n  stages {\n    stage('Test') { steps { sh 'npm ci && npm test' } }\n  }\n}\n",
	})
	api := gitlabtest.NewAPI("t")
	api.FoundationalWorkflow("9")
	ci := "stages: [test]\n\ntest:\n  stage: test\n  image: node:22\n  script:\n    - npm ci\n    - npm test\n"
	model := &scripted{}
	model.steps = append(model.steps,
		tc("read_file", map[string]any{"file_path": "Jenkinsfile"}),
		tc("run_git_command", map[string]any{"command": "checkout", "args": "-b duo/workflow-9"}),
		tc("create_file_with_contents", map[string]any{"file_path": ".gitlab-ci.yml", "contents": ci}),
		tc("run_git_command", map[string]any{"command": "add", "args": ".gitlab-ci.yml"}),
		tc("run_git_command", map[string]any{"command": "commit", "args": "-m 'Add GitLab CI converted from Jenkinsfile'"}),
		tc("run_git_command", map[string]any{"command": "push", "args": "-u origin duo/workflow-9"}),
		final("Pushed duo/workflow-9 with .gitlab-ci.yml."),
		tc("create_merge_request", map[string]any{"source_branch": "duo/workflow-9", "title": "Convert Jenkinsfile to GitLab CI"}),
	)
	s := &ciSession{api: api, ex: newExecutor(dir), start: &contract.StartWorkflowRequest{WorkflowID: "9", WorkflowDefinition: "convert_to_gl_ci/v1", Goal: "Jenkinsfile"}}
	out, err := newFlows(t, model).ByDefinition["convert_to_gl_ci/v1"].Run(context.Background(), s)
	if err != nil || out != flow.Finished {
		t.Fatalf("%v %v", out, err)
	}
	if got := testutil.GitShow(t, origin, "duo/workflow-9", ".gitlab-ci.yml"); got != ci {
		t.Fatalf("ci file %q", got)
	}
}
