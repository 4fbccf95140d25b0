package gitlabtest

import (
	"bytes"
	"compress/zlib"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// API is a DEMO stand-in for the parts of GitLab's REST and GraphQL API
// the Agent Platform reaches through the executor (Workhorse answers
// runHTTPRequest actions by calling GitLab with the user's OAuth token):
// one sample project with issues, a merge request and files, and the Duo
// workflow records (GraphQL duoWorkflowWorkflows, status events,
// checkpoints). It is not GitLab; shapes follow GitLab's API documentation
// for the fields the service reads.
type API struct {
	// Token is the OAuth token every request must carry as Bearer.
	Token string

	mu        sync.Mutex
	workflows map[string]*Workflow
	notes     map[string][]map[string]any // "issues/1" → notes
	requests  []string                    // "METHOD path" seen, for tests
	// reviews and createdMRs are what the flows posted (flows_api.go).
	reviews    []ReviewPost
	createdMRs []map[string]any
	eventSeq   int64 // last human event id (workflow_events.go)
}

// Workflow is a Duo workflow record of the demo API.
type Workflow struct {
	Status      string
	Privileges  []string
	PreApproved []string
	// Checkpoints are the persisted checkpoint objects, oldest first.
	Checkpoints []map[string]any
	// ThreadTS are their thread_ts values.
	ThreadTS []string
	// Events are the human events (workflow_events.go).
	Events []*HumanEvent
}

// DemoProjectID is the sample project's id.
const DemoProjectID = 1

// NewAPI returns the demo API with its sample project.
func NewAPI(token string) *API {
	return &API{Token: token, workflows: map[string]*Workflow{}, notes: map[string][]map[string]any{
		"issues/1": {{"id": 11, "body": "I can reproduce this on Firefox too.", "author": map[string]any{"username": "alice"}}},
	}}
}

// FoundationalFlowPrivileges are the agent privileges Rails grants a
// foundational flow's workflow, all pre-approved (an ambient flow in a CI
// job has nobody to ask).
var FoundationalFlowPrivileges = []string{"read_write_files", "use_git", "run_commands", "read_write_gitlab", "read_only_gitlab"}

// FoundationalWorkflow returns the record of workflow id with
// FoundationalFlowPrivileges, as Rails creates it for a foundational flow.
func (a *API) FoundationalWorkflow(id string) *Workflow {
	a.mu.Lock()
	defer a.mu.Unlock()
	w := a.workflowLocked(id)
	w.Privileges = append([]string(nil), FoundationalFlowPrivileges...)
	w.PreApproved = append([]string(nil), FoundationalFlowPrivileges...)
	return w
}

// Workflow returns (creating if needed) the record of workflow id, with
// web-chat privileges (read-only and read-write GitLab, read-only
// pre-approved) as Rails creates them.
func (a *API) Workflow(id string) *Workflow {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.workflowLocked(id)
}

func (a *API) workflowLocked(id string) *Workflow {
	w, ok := a.workflows[id]
	if !ok {
		w = &Workflow{Status: "created", Privileges: []string{"read_only_gitlab", "read_write_gitlab"}, PreApproved: []string{"read_only_gitlab"}}
		a.workflows[id] = w
	}
	return w
}

// Requests returns the "METHOD path" lines served so far.
func (a *API) Requests() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.requests...)
}

// Notes returns the notes of "issues/<iid>" or "merge_requests/<iid>".
func (a *API) Notes(key string) []map[string]any {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]map[string]any(nil), a.notes[key]...)
}

// demoFiles is the sample project's repository on its default branch: the
// cart whose total ignores quantity (issue 1), the test that fails because
// of it (the failed pipeline's log) and the Jenkinsfile the project still
// has (for Convert to GitLab CI).
var demoFiles = map[string]string{
	"README.md":         "# Demo shop\n\nA tiny web shop used by the duo-confidential demo.\n",
	"src/cart.js":       "export function total(items) {\n  return items.reduce((s, i) => s + i.price, 0)\n}\n",
	"package.json":      "{\n  \"name\": \"shop\",\n  \"version\": \"1.0.0\",\n  \"type\": \"module\",\n  \"scripts\": { \"test\": \"node --test\" }\n}\n",
	"test/cart.test.js": "import test from 'node:test'\nimport assert from 'node:assert'\nimport { total } from '../src/cart.js'\n\ntest('total multiplies price by quantity', () => {\n  assert.strictEqual(total([{ price: 4, quantity: 2 }]), 8)\n})\n",
	"Jenkinsfile": "pipeline {\n  agent { docker { image 'node:22' } }\n  stages {\n    stage('Install') { steps { sh 'npm ci' } }\n" +
		"    stage('Test') { steps { sh 'npm test' } }\n  }\n}\n",
}

// DemoFiles returns a copy of the sample project's repository (path →
// content), for a test's checkout of the project an executor works in.
func DemoFiles() map[string]string {
	out := make(map[string]string, len(demoFiles))
	for k, v := range demoFiles {
		out[k] = v
	}
	return out
}

var demoIssues = []map[string]any{
	{"id": 101, "iid": 1, "project_id": DemoProjectID, "title": "Cart total ignores quantity", "state": "opened",
		"description": "Adding two of the same item to the cart shows the price once. `total` in src/cart.js sums prices only.", "labels": []string{"bug"}},
	{"id": 102, "iid": 2, "project_id": DemoProjectID, "title": "Add dark mode", "state": "opened", "description": "Users ask for a dark theme.", "labels": []string{"feature"}},
}

var demoMR = map[string]any{"id": 201, "iid": 1, "project_id": DemoProjectID, "title": "Multiply price by quantity", "state": "opened",
	"source_branch": "fix-total", "target_branch": "main", "description": "Closes #1."}

var demoDiffs = []map[string]any{{"old_path": "src/cart.js", "new_path": "src/cart.js",
	"diff": "@@ -1,3 +1,3 @@\n export function total(items) {\n-  return items.reduce((s, i) => s + i.price, 0)\n+  return items.reduce((s, i) => s + i.price * i.quantity, 0)\n }\n"}}

var (
	reWorkflow   = regexp.MustCompile(`^/api/v4/ai/duo_workflows/workflows/(\d+)(/checkpoints)?$`)
	reProject    = regexp.MustCompile(`^/api/v4/projects/(1|demo%2Fshop)(/.*)?$`)
	reIssue      = regexp.MustCompile(`^/issues/(\d+)$`)
	reIssueNotes = regexp.MustCompile(`^/(issues|merge_requests)/(\d+)/notes$`)
	reRawFile    = regexp.MustCompile(`^/repository/files/([^/]+)/raw$`)
	reGID        = regexp.MustCompile(`Workflow/(\d+)$`)
)

// ServeHTTP answers the demo API.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+a.Token {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"message": "401 Unauthorized"})
		return
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	path := r.URL.EscapedPath()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.requests = append(a.requests, r.Method+" "+r.URL.RequestURI())
	switch {
	case r.Method == http.MethodPost && path == "/api/graphql":
		a.graphql(w, body)
	case path == "/api/v4/user":
		writeJSON(w, 200, map[string]any{"id": 1, "username": "demo", "name": "Demo User"})
	case reWorkflow.MatchString(path):
		m := reWorkflow.FindStringSubmatch(path)
		a.workflowRoute(w, r.Method, m[1], m[2] != "", body)
	case reWorkflowEvents.MatchString(path):
		m := reWorkflowEvents.FindStringSubmatch(path)
		a.eventsRoute(w, r, m[1], m[2], body)
	case reProject.MatchString(path):
		a.projectRoute(w, r, reProject.FindStringSubmatch(path)[2], body)
	case a.flowsRoute(w, r, path, body):
	default:
		writeJSON(w, 404, map[string]any{"message": "404 Not Found"})
	}
}

func (a *API) graphql(w http.ResponseWriter, body []byte) {
	var q struct {
		Query     string            `json:"query"`
		Variables map[string]string `json:"variables"`
	}
	if json.Unmarshal(body, &q) != nil || !strings.Contains(q.Query, "duoWorkflowWorkflows") {
		writeJSON(w, 200, map[string]any{"errors": []any{map[string]any{"message": "unsupported query in the demo GitLab"}}})
		return
	}
	m := reGID.FindStringSubmatch(q.Variables["workflowId"])
	if m == nil {
		writeJSON(w, 200, map[string]any{"data": map[string]any{"duoWorkflowWorkflows": map[string]any{"nodes": []any{}}}})
		return
	}
	wf := a.workflowLocked(m[1])
	node := map[string]any{
		"statusName": wf.Status, "projectId": fmt.Sprintf("gid://gitlab/Project/%d", DemoProjectID),
		"project":              map[string]any{"id": fmt.Sprintf("gid://gitlab/Project/%d", DemoProjectID), "name": "shop", "webUrl": "https://gitlab.demo/demo/shop"},
		"agentPrivilegesNames": wf.Privileges, "preApprovedAgentPrivilegesNames": wf.PreApproved, "mcpEnabled": false,
	}
	var latest any
	if n := len(wf.Checkpoints); n > 0 {
		latest = map[string]any{"threadTs": wf.ThreadTS[n-1], "checkpoint": wf.Checkpoints[n-1]}
	}
	if strings.Contains(q.Query, "latestCheckpoint") {
		node["latestCheckpoint"] = latest
	} else {
		node["firstCheckpoint"] = latest
	}
	writeJSON(w, 200, map[string]any{"data": map[string]any{"duoWorkflowWorkflows": map[string]any{"nodes": []any{node}}}})
}

// transitions is Rails' workflow state machine (event → from-states and
// the new state), as ee/app/models/ai/duo_workflows/workflow.rb has it.
var transitions = func() map[string]struct {
	from []string
	to   string
} {
	waiting := []string{"paused", "input_required", "plan_approval_required", "tool_call_approval_required"}
	active := append([]string{"created", "running"}, waiting...)
	type tr = struct {
		from []string
		to   string
	}
	return map[string]tr{
		"start":                      {[]string{"created"}, "running"},
		"pause":                      {[]string{"running"}, "paused"},
		"require_input":              {[]string{"running"}, "input_required"},
		"require_plan_approval":      {[]string{"running"}, "plan_approval_required"},
		"require_tool_call_approval": {[]string{"running"}, "tool_call_approval_required"},
		"resume":                     {waiting, "running"},
		"retry":                      {[]string{"running", "stopped", "failed"}, "running"},
		"finish":                     {[]string{"running"}, "finished"},
		"drop":                       {active, "failed"},
		"stop":                       {active, "stopped"},
	}
}()

func (a *API) workflowRoute(w http.ResponseWriter, method, id string, checkpoints bool, body []byte) {
	wf := a.workflowLocked(id)
	switch {
	case !checkpoints && method == http.MethodPatch:
		var req struct {
			StatusEvent string `json:"status_event"`
		}
		_ = json.Unmarshal(body, &req)
		t, ok := transitions[req.StatusEvent]
		if !ok || !contains(t.from, wf.Status) {
			writeJSON(w, 400, map[string]any{"message": fmt.Sprintf("Can not %s workflow that has status %s", req.StatusEvent, wf.Status)})
			return
		}
		wf.Status = t.to
		writeJSON(w, 200, map[string]any{"workflow": map[string]any{"id": id, "status": wf.Status}})
	case checkpoints && method == http.MethodPost:
		var req struct {
			ThreadTS   string         `json:"thread_ts"`
			Checkpoint map[string]any `json:"checkpoint"`
			Compressed string         `json:"compressed_checkpoint"`
			Metadata   map[string]any `json:"metadata"`
		}
		if json.Unmarshal(body, &req) != nil || req.ThreadTS == "" || req.Metadata == nil {
			writeJSON(w, 400, map[string]any{"message": "thread_ts and metadata are required"})
			return
		}
		if req.Compressed != "" {
			cp, err := inflateCheckpoint(req.Compressed)
			if err != nil {
				writeJSON(w, 400, map[string]any{"message": "compressed_checkpoint is invalid"})
				return
			}
			req.Checkpoint = cp
		}
		if req.Checkpoint == nil {
			writeJSON(w, 400, map[string]any{"message": "checkpoint is required"})
			return
		}
		if n := len(wf.ThreadTS); n > 0 && req.ThreadTS <= wf.ThreadTS[n-1] {
			writeJSON(w, 400, map[string]any{"message": "thread_ts does not sort after the previous checkpoint"})
			return
		}
		wf.Checkpoints = append(wf.Checkpoints, req.Checkpoint)
		wf.ThreadTS = append(wf.ThreadTS, req.ThreadTS)
		writeJSON(w, 201, map[string]any{"id": len(wf.Checkpoints), "thread_ts": req.ThreadTS})
	default:
		writeJSON(w, 405, map[string]any{"message": "405 Method Not Allowed"})
	}
}

func inflateCheckpoint(s string) (map[string]any, error) {
	z, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, err
	}
	zr, err := zlib.NewReader(bytes.NewReader(z))
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(zr, 8<<20))
	if err != nil {
		return nil, err
	}
	var m map[string]any
	return m, json.Unmarshal(b, &m)
}

func (a *API) projectRoute(w http.ResponseWriter, r *http.Request, sub string, body []byte) {
	get := r.Method == http.MethodGet
	switch {
	case sub == "" && get:
		writeJSON(w, 200, map[string]any{"id": DemoProjectID, "name": "shop", "path_with_namespace": "demo/shop", "default_branch": "main",
			"description": "A tiny web shop", "web_url": "https://gitlab.demo/demo/shop"})
	case sub == "/issues" && get:
		writeJSON(w, 200, demoIssues)
	case reIssue.MatchString(sub) && get:
		iid, _ := strconv.Atoi(reIssue.FindStringSubmatch(sub)[1])
		for _, is := range demoIssues {
			if is["iid"] == iid {
				writeJSON(w, 200, is)
				return
			}
		}
		writeJSON(w, 404, map[string]any{"message": "404 Issue Not Found"})
	case reIssueNotes.MatchString(sub):
		m := reIssueNotes.FindStringSubmatch(sub)
		key := m[1] + "/" + m[2]
		if get {
			writeJSON(w, 200, a.notes[key])
			return
		}
		var req struct {
			Body string `json:"body"`
		}
		if r.Method != http.MethodPost || json.Unmarshal(body, &req) != nil || req.Body == "" {
			writeJSON(w, 400, map[string]any{"message": "400 Bad request - body is missing"})
			return
		}
		note := map[string]any{"id": 1000 + len(a.notes[key]), "body": req.Body, "author": map[string]any{"username": "demo"}}
		a.notes[key] = append(a.notes[key], note)
		writeJSON(w, 201, note)
	case sub == "/merge_requests/1" && get:
		writeJSON(w, 200, demoMR)
	case sub == "/merge_requests/1/diffs" && get:
		writeJSON(w, 200, demoDiffs)
	case sub == "/repository/tree" && get:
		writeJSON(w, 200, []map[string]any{{"name": "Jenkinsfile", "type": "blob", "path": "Jenkinsfile"}, {"name": "README.md", "type": "blob", "path": "README.md"},
			{"name": "package.json", "type": "blob", "path": "package.json"}, {"name": "src", "type": "tree", "path": "src"}, {"name": "test", "type": "tree", "path": "test"}})
	case reRawFile.MatchString(sub) && get:
		name := strings.ReplaceAll(reRawFile.FindStringSubmatch(sub)[1], "%2F", "/")
		if c, ok := demoFiles[name]; ok {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, c)
			return
		}
		writeJSON(w, 404, map[string]any{"message": "404 File Not Found"})
	case sub == "/search" && get:
		q := strings.ToLower(r.URL.Query().Get("search"))
		var hits []map[string]any
		for _, is := range demoIssues {
			if strings.Contains(strings.ToLower(is["title"].(string)+" "+is["description"].(string)), q) {
				hits = append(hits, is)
			}
		}
		writeJSON(w, 200, hits)
	case a.flowsProjectRoute(w, r, sub, body):
	default:
		writeJSON(w, 404, map[string]any{"message": "404 Not Found"})
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
