package gitlabtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/codereview"
)

// The parts of the demo API the foundational flows use: a second, multi-file
// merge request, a failed pipeline with job logs, merge request creation,
// and Duo Code Review's add_comments endpoint. Shapes follow GitLab's REST
// documentation for the fields the flows read.

// AddCommentsPath is GitLab's endpoint for DAP review comments.
const AddCommentsPath = "/api/v4/ai/duo_workflows/code_review/add_comments"

// DemoFailedPipelineID is the sample project's failed pipeline.
const DemoFailedPipelineID = 301

// ReviewPost is one add_comments request the API received.
type ReviewPost struct {
	ProjectID       any    `json:"project_id"`
	MergeRequestIID any    `json:"merge_request_iid"`
	ReviewOutput    string `json:"review_output"`
	WorkflowID      any    `json:"workflow_id"`
}

// ReviewPosts returns the add_comments requests received so far.
func (a *API) ReviewPosts() []ReviewPost {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]ReviewPost(nil), a.reviews...)
}

// CreatedMergeRequests returns the merge requests created through the API.
func (a *API) CreatedMergeRequests() []map[string]any {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]map[string]any(nil), a.createdMRs...)
}

var demoMR2 = map[string]any{"id": 202, "iid": 2, "project_id": DemoProjectID, "title": "Apply discount codes at checkout", "state": "opened",
	"source_branch": "discounts", "target_branch": "main", "description": "Adds discount codes (SAVE10) and applies them to the cart total."}

// demoDiffs2 is a two-file change: a modified and a new file.
var demoDiffs2 = []map[string]any{
	{"old_path": "src/cart.js", "new_path": "src/cart.js", "new_file": false, "deleted_file": false, "renamed_file": false,
		"diff": "@@ -1,3 +1,8 @@\n-export function total(items) {\n-  return items.reduce((s, i) => s + i.price, 0)\n+import { discount } from './discount.js'\n+\n+export function total(items, code) {\n+  const sum = items.reduce((s, i) => s + i.price * i.quantity, 0)\n+  return sum - discount(sum, code)\n }\n+\n+export const currency = 'EUR'\n"},
	{"old_path": "src/discount.js", "new_path": "src/discount.js", "new_file": true, "deleted_file": false, "renamed_file": false,
		"diff": "@@ -0,0 +1,7 @@\n+const codes = { SAVE10: 0.1, HALF: 0.5 }\n+\n+export function discount(sum, code) {\n+  const rate = codes[code]\n+  if (rate == undefined) return 0\n+  return sum * rate\n+}\n"},
}

var demoFailedJobs = []map[string]any{
	{"id": 401, "name": "test", "stage": "test", "status": "failed", "failure_reason": "script_failure", "pipeline": map[string]any{"id": DemoFailedPipelineID}},
}

// demoJobLog is the failing job's trace: the cart test fails because
// total ignores quantity.
const demoJobLog = "Running with gitlab-runner 18.8.0\n$ npm ci\nadded 12 packages\n$ npm test\n\n> shop@1.0.0 test\n> node --test\n\n" +
	"not ok 1 - total multiplies price by quantity\n  ---\n  location: 'test/cart.test.js:5:1'\n  error: |-\n    Expected values to be strictly equal:\n\n    4 !== 8\n\n" +
	"  stack: |-\n    TestContext.<anonymous> (test/cart.test.js:6:10)\n    src/cart.js:2 total\n  ...\n# tests 1\n# fail 1\nERROR: Job failed: exit code 1\n"

var (
	reMR    = regexp.MustCompile(`^/merge_requests/(\d+)(/diffs)?$`)
	reJobs  = regexp.MustCompile(`^/pipelines/(\d+)/jobs$`)
	reTrace = regexp.MustCompile(`^/jobs/(\d+)/trace$`)
	rePipe  = regexp.MustCompile(`^/pipelines/(\d+)$`)
)

// flowsRoute answers the non-project endpoints of the flows; false when
// the path is not one of them. Called with a.mu held.
func (a *API) flowsRoute(w http.ResponseWriter, r *http.Request, path string, body []byte) bool {
	if path != AddCommentsPath {
		return false
	}
	var req ReviewPost
	if r.Method != http.MethodPost || json.Unmarshal(body, &req) != nil || req.ReviewOutput == "" {
		writeJSON(w, 400, map[string]any{"message": "400 Bad request - review_output is missing"})
		return true
	}
	if iid := asInt(req.MergeRequestIID); iid != 1 && iid != 2 {
		writeJSON(w, 404, map[string]any{"message": "404 Merge Request Not Found"})
		return true
	}
	a.reviews = append(a.reviews, req)
	// Like GitLab, turn the review into notes on the merge request (GitLab
	// creates draft notes and publishes them as one review).
	key := "merge_requests/" + strconv.Itoa(asInt(req.MergeRequestIID))
	p := codereview.Parse(req.ReviewOutput)
	if p.Summary != "" {
		a.notes[key] = append(a.notes[key], map[string]any{"id": 2000 + len(a.notes[key]), "body": p.Summary, "author": map[string]any{"username": "GitLabDuo"}})
	}
	for i, c := range p.Comments {
		if i >= codereview.MaxComments {
			break
		}
		line := c.NewLine
		if line == 0 {
			line = c.OldLine
		}
		a.notes[key] = append(a.notes[key], map[string]any{"id": 2000 + len(a.notes[key]), "body": fmt.Sprintf("%s:%d — %s", c.File, line, c.Body),
			"author": map[string]any{"username": "GitLabDuo"}, "position": map[string]any{"new_path": c.File, "new_line": c.NewLine, "old_line": c.OldLine}})
	}
	writeJSON(w, 200, map[string]any{"message": "Comments added successfully"})
	return true
}

func asInt(v any) int {
	switch x := v.(type) {
	case float64:
		return int(x)
	case string:
		n, _ := strconv.Atoi(x)
		return n
	}
	return 0
}

// flowsProjectRoute answers the project endpoints of the flows; false when
// sub is not one of them. Called with a.mu held.
func (a *API) flowsProjectRoute(w http.ResponseWriter, r *http.Request, sub string, body []byte) bool {
	get := r.Method == http.MethodGet
	switch {
	case reMR.MatchString(sub) && get:
		m := reMR.FindStringSubmatch(sub)
		var mr map[string]any
		var diffs []map[string]any
		switch m[1] {
		case "1":
			mr, diffs = demoMR, demoDiffs
		case "2":
			mr, diffs = demoMR2, demoDiffs2
		default:
			writeJSON(w, 404, map[string]any{"message": "404 Merge Request Not Found"})
			return true
		}
		if m[2] == "" {
			writeJSON(w, 200, mr)
			return true
		}
		if r.URL.Query().Get("page") > "1" {
			writeJSON(w, 200, []map[string]any{})
			return true
		}
		writeJSON(w, 200, diffs)
	case sub == "/merge_requests" && r.Method == http.MethodPost:
		var req map[string]any
		if json.Unmarshal(body, &req) != nil || req["source_branch"] == nil || req["title"] == nil || req["target_branch"] == nil {
			writeJSON(w, 400, map[string]any{"message": "400 Bad request - source_branch, target_branch and title are required"})
			return true
		}
		mr := map[string]any{"id": 500 + len(a.createdMRs), "iid": 10 + len(a.createdMRs), "project_id": DemoProjectID, "state": "opened",
			"title": req["title"], "description": req["description"], "source_branch": req["source_branch"], "target_branch": req["target_branch"]}
		mr["web_url"] = "https://gitlab.demo/demo/shop/-/merge_requests/" + strconv.Itoa(mr["iid"].(int))
		a.createdMRs = append(a.createdMRs, mr)
		writeJSON(w, 201, mr)
	case rePipe.MatchString(sub) && get:
		if rePipe.FindStringSubmatch(sub)[1] != strconv.Itoa(DemoFailedPipelineID) {
			writeJSON(w, 404, map[string]any{"message": "404 Not found"})
			return true
		}
		writeJSON(w, 200, map[string]any{"id": DemoFailedPipelineID, "status": "failed", "ref": "main", "sha": "e1f0c0de"})
	case reJobs.MatchString(sub) && get:
		if reJobs.FindStringSubmatch(sub)[1] != strconv.Itoa(DemoFailedPipelineID) {
			writeJSON(w, 404, map[string]any{"message": "404 Not found"})
			return true
		}
		writeJSON(w, 200, demoFailedJobs)
	case reTrace.MatchString(sub) && get:
		if reTrace.FindStringSubmatch(sub)[1] != "401" {
			writeJSON(w, 404, map[string]any{"message": "404 Not found"})
			return true
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte(demoJobLog))
	default:
		return false
	}
	return true
}
