package gitlabtools

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flowtools"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/gitlabapi"
)

// maxLogBytes is how much of a job log's tail a tool returns.
const maxLogBytes = 16 << 10

var (
	pProject = [3]string{"project_id", "string", "The project's id or full path (default: the workflow's project)."}
	pRef     = [3]string{"ref", "string", "Branch, tag or commit (default: the default branch)."}
)

func project(env *flowtools.Env, args map[string]any) (string, error) {
	p, err := flowtools.String(args, "project_id", false)
	if err != nil {
		return "", err
	}
	if p == "" {
		p = env.ProjectID()
	}
	if p == "" {
		return "", fmt.Errorf("%w: project_id is required", flowtools.ErrBadArgs)
	}
	return gitlabapi.ProjectPath(p), nil
}

func compact(b []byte) string {
	var buf bytes.Buffer
	if json.Compact(&buf, b) == nil {
		return buf.String()
	}
	return string(b)
}

// get builds a read tool from a path function.
func get(name, desc string, required []string, path func(p string, a map[string]any) (string, error), props ...[3]string) *flowtools.Tool {
	return &flowtools.Tool{
		Name: name, Description: desc, Privilege: flowtools.ReadOnlyGitLab, Params: flowtools.Schema(required, append([][3]string{pProject}, props...)...),
		Run: func(ctx context.Context, env *flowtools.Env, args map[string]any) (string, error) {
			p, err := project(env, args)
			if err != nil {
				return "", err
			}
			ap, err := path(p, args)
			if err != nil {
				return "", err
			}
			r, err := env.GitLab.Do(ctx, "GET", ap, nil)
			if err != nil {
				return "", err
			}
			return flowtools.Truncate(compact(r.Body), flowtools.MaxResultBytes), nil
		},
	}
}

func arg(a map[string]any, name string) (string, error) { return flowtools.String(a, name, true) }

func withRef(path string, a map[string]any) string {
	if ref, _ := flowtools.String(a, "ref", false); ref != "" {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		return path + sep + "ref=" + url.QueryEscape(ref)
	}
	return path
}

// Tools returns the GitLab tools.
func Tools() []*flowtools.Tool {
	return []*flowtools.Tool{
		get("get_repository_file", "Read a file of the project's repository.", []string{"file_path"},
			func(p string, a map[string]any) (string, error) {
				f, err := arg(a, "file_path")
				if err != nil {
					return "", err
				}
				return withRef(p+"/repository/files/"+url.PathEscape(f)+"/raw", a), nil
			}, [3]string{"file_path", "string", "Path in the repository."}, pRef),
		get("list_repository_tree", "List files and directories of the project's repository.", nil,
			func(p string, a map[string]any) (string, error) {
				path := gitlabapi.Paged(p+"/repository/tree", 1)
				if d, _ := flowtools.String(a, "path", false); d != "" {
					path += "&path=" + url.QueryEscape(d)
				}
				if r, _ := a["recursive"].(bool); r {
					path += "&recursive=true"
				}
				return withRef(path, a), nil
			}, [3]string{"path", "string", "Directory (default: the root)."}, [3]string{"recursive", "boolean", "List subdirectories too."}, pRef),
		get("get_issue", "Read an issue.", []string{"issue_iid"},
			func(p string, a map[string]any) (string, error) {
				iid, err := arg(a, "issue_iid")
				return p + "/issues/" + url.PathEscape(iid), err
			}, [3]string{"issue_iid", "integer", "The issue's number in the project."}),
		get("get_merge_request", "Read a merge request.", []string{"merge_request_iid"},
			func(p string, a map[string]any) (string, error) {
				iid, err := arg(a, "merge_request_iid")
				return p + "/merge_requests/" + url.PathEscape(iid), err
			}, [3]string{"merge_request_iid", "integer", "The merge request's number."}),
		get("get_pipeline_failing_jobs", "List the failed jobs of a pipeline.", []string{"pipeline_id"},
			func(p string, a map[string]any) (string, error) {
				id, err := arg(a, "pipeline_id")
				return gitlabapi.Paged(p+"/pipelines/"+url.PathEscape(id)+"/jobs?scope[]=failed", 1), err
			}, [3]string{"pipeline_id", "integer", "The pipeline's id."}),
		{
			Name: "get_job_logs", Description: "Read the end of a CI job's log.", Privilege: flowtools.ReadOnlyGitLab,
			Params: flowtools.Schema([]string{"job_id"}, pProject, [3]string{"job_id", "integer", "The job's id."}),
			Run: func(ctx context.Context, env *flowtools.Env, args map[string]any) (string, error) {
				p, err := project(env, args)
				if err != nil {
					return "", err
				}
				id, err := arg(args, "job_id")
				if err != nil {
					return "", err
				}
				r, err := env.GitLab.Do(ctx, "GET", p+"/jobs/"+url.PathEscape(id)+"/trace", nil)
				if err != nil {
					return "", err
				}
				return tail(string(r.Body), maxLogBytes), nil
			},
		},
		{
			Name: "create_merge_request", Description: "Open a merge request from a pushed branch.", Privilege: flowtools.ReadWriteGitLab, Write: true,
			Params: flowtools.Schema([]string{"source_branch", "title"}, pProject,
				[3]string{"source_branch", "string", "The branch with the changes (pushed already)."},
				[3]string{"target_branch", "string", "The branch to merge into (default: the default branch)."},
				[3]string{"title", "string", "Title."}, [3]string{"description", "string", "Description (Markdown)."}),
			Run: func(ctx context.Context, env *flowtools.Env, args map[string]any) (string, error) {
				p, err := project(env, args)
				if err != nil {
					return "", err
				}
				body := map[string]any{}
				for _, k := range []string{"source_branch", "target_branch", "title", "description"} {
					v, err := flowtools.String(args, k, k == "source_branch" || k == "title")
					if err != nil {
						return "", err
					}
					if v != "" {
						body[k] = v
					}
				}
				if _, ok := body["target_branch"]; !ok {
					var proj struct {
						DefaultBranch string `json:"default_branch"`
					}
					if err := env.GitLab.JSON(ctx, "GET", p, nil, &proj); err != nil {
						return "", err
					}
					body["target_branch"] = proj.DefaultBranch
				}
				r, err := env.GitLab.Do(ctx, "POST", p+"/merge_requests", body)
				if err != nil {
					return "", err
				}
				var mr struct {
					IID    int    `json:"iid"`
					WebURL string `json:"web_url"`
				}
				_ = json.Unmarshal(r.Body, &mr)
				return fmt.Sprintf(`{"status":"created","iid":%d,"web_url":%q}`, mr.IID, mr.WebURL), nil
			},
		},
	}
}

// tail keeps the last n bytes of a log (failures are at the end), saying so.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := len(s) - n
	for cut < len(s) && s[cut]&0xC0 == 0x80 {
		cut++
	}
	return fmt.Sprintf("[log truncated: the last %d of %d bytes]\n", len(s)-cut, len(s)) + s[cut:]
}
