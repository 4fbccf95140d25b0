package chat

import (
	"context"
	"strings"
	"testing"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flowtools"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/gitlabapi"
)

// pathRecorder answers every runHTTPRequest with 200 {} and keeps the
// paths.
type pathRecorder struct{ paths []string }

func (p *pathRecorder) Do(_ context.Context, a *contract.Action) (*contract.ActionResponse, error) {
	p.paths = append(p.paths, a.GetRunHTTPRequest().GetPath())
	return &contract.ActionResponse{ResponseType: &contract.ActionResponse_HttpResponse{HttpResponse: &contract.HttpResponse{StatusCode: 200, Body: "{}"}}}, nil
}

// FuzzToolArguments feeds model-written argument JSON to every GitLab
// tool: parsing never panics, and every request stays a GitLab API path
// without dot segments, whatever the model wrote.
func FuzzToolArguments(f *testing.F) {
	f.Add("get_issue", `{"issue_iid":1}`)
	f.Add("get_repository_file", `{"file_path":"../../etc/passwd","ref":"main?x=1"}`)
	f.Add("create_work_item_note", `{"project_id":"..","work_item_iid":"1/../../admin","body":"x"}`)
	f.Fuzz(func(t *testing.T, name, raw string) {
		tl, ok := catalogue()[name]
		if !ok || tl.Privilege == PrivReadWriteFiles || tl.Privilege == PrivRunCommands {
			return
		}
		args, err := flowtools.ParseArgs(raw)
		if err != nil {
			return
		}
		rec := &pathRecorder{}
		env := &flowtools.Env{GitLab: gitlabapi.New(rec), Workflow: &gitlabapi.Workflow{ProjectID: "1"}}
		_, _ = tl.Run(context.Background(), env, args)
		for _, p := range rec.paths {
			if !strings.HasPrefix(p, "/api/v4/") {
				t.Fatalf("%s built %q", name, p)
			}
			path, _, _ := strings.Cut(p, "?")
			for _, seg := range strings.Split(path, "/") {
				if seg == "." || seg == ".." {
					t.Fatalf("%s built a dot segment: %q", name, p)
				}
			}
		}
	})
}
