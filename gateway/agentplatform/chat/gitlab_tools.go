package chat

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

// Common parameter descriptions.
var (
	pProject = [3]string{"project_id", "string", "Project id or full path; defaults to the workflow's project."}
	pIID     = func(what string) [3]string {
		return [3]string{what + "_iid", "integer", "The " + strings.ReplaceAll(what, "_", " ") + "'s number inside the project (iid)."}
	}
	pPage = [3]string{"page", "integer", "Page number, 20 entries per page (default 1)."}
)

// restRead is a GitLab GET tool: path builds the API path from arguments.
func restRead(name, desc string, required []string, path func(p string, a map[string]any) (string, error), props ...[3]string) *flowtools.Tool {
	return &flowtools.Tool{
		Name: name, Description: desc, Privilege: PrivReadOnlyGitLab,
		Params: schema(required, props...),
		Run: func(ctx context.Context, env *flowtools.Env, args map[string]any) (string, error) {
			apiPath, err := apiPathFor(env, args, path)
			if err != nil {
				return "", err
			}
			r, err := env.GitLab.Do(ctx, "GET", apiPath, nil)
			if err != nil {
				return "", err
			}
			if name == "get_job_logs" {
				// A failure is at the end of a log: keep the tail.
				return boundTail(string(r.Body)), nil
			}
			return boundResult(compactJSON(r.Body)), nil
		},
	}
}

// apiPathFor builds a tool's API path under its project (the argument, or
// the workflow's).
func apiPathFor(env *flowtools.Env, args map[string]any, path func(p string, a map[string]any) (string, error)) (string, error) {
	p, err := projectArg(env, args)
	if err != nil {
		return "", err
	}
	return path(p, args)
}

func projectArg(env *flowtools.Env, args map[string]any) (string, error) {
	p, err := str(args, "project_id", false)
	if err != nil {
		return "", err
	}
	if p == "" {
		p = env.ProjectID()
	}
	if p == "" {
		return "", fmt.Errorf("%w: project_id is required (the workflow has no project)", errBadArgs)
	}
	return gitlabapi.ProjectPath(p), nil
}

func page(a map[string]any) int {
	if f, ok := a["page"].(float64); ok && f >= 1 && f < 10000 {
		return int(f)
	}
	return 1
}

// sub joins a project path with a suffix taking one required argument.
func sub(arg, format string) func(p string, a map[string]any) (string, error) {
	return func(p string, a map[string]any) (string, error) {
		v, err := str(a, arg, true)
		if err != nil {
			return "", err
		}
		return p + fmt.Sprintf(format, url.PathEscape(v)), nil
	}
}

// list pages a project sub-collection.
func list(suffix string) func(p string, a map[string]any) (string, error) {
	return func(p string, a map[string]any) (string, error) {
		return gitlabapi.Paged(p+suffix, page(a)), nil
	}
}

// subList pages a sub-collection of one item.
func subList(arg, format string) func(p string, a map[string]any) (string, error) {
	one := sub(arg, format)
	return func(p string, a map[string]any) (string, error) {
		s, err := one(p, a)
		if err != nil {
			return "", err
		}
		return gitlabapi.Paged(s, page(a)), nil
	}
}

func gitlabReadTools() []*flowtools.Tool {
	mr, issue := pIID("merge_request"), pIID("work_item")
	return []*flowtools.Tool{
		restRead("get_project", "Show a GitLab project: name, description, default branch, URLs.", nil,
			func(p string, _ map[string]any) (string, error) { return p, nil }, pProject),
		restRead("get_current_user", "Show the GitLab user this chat acts for.", nil,
			func(string, map[string]any) (string, error) { return "/api/v4/user", nil }),
		restRead("get_issue", "Show one issue of a project by its number.", []string{"issue_iid"},
			sub("issue_iid", "/issues/%s"), pProject, pIID("issue")),
		restRead("list_issue_notes", "List the comments of an issue, oldest first, 20 per page.", []string{"issue_iid"},
			subList("issue_iid", "/issues/%s/notes?sort=asc"), pProject, pIID("issue"), pPage),
		restRead("get_work_item", "Show one work item (issue, task) of a project by its number.", []string{"work_item_iid"},
			sub("work_item_iid", "/issues/%s"), pProject, issue),
		restRead("list_work_items", "List open work items (issues) of a project, newest first, 20 per page.", nil,
			list("/issues?state=opened"), pProject, pPage),
		restRead("get_work_item_notes", "List the comments of a work item, oldest first, 20 per page.", []string{"work_item_iid"},
			subList("work_item_iid", "/issues/%s/notes?sort=asc"), pProject, issue, pPage),
		restRead("get_merge_request", "Show one merge request: title, description, branches, state.", []string{"merge_request_iid"},
			sub("merge_request_iid", "/merge_requests/%s"), pProject, mr),
		restRead("list_merge_request_diffs", "List the file diffs of a merge request, 20 files per page.", []string{"merge_request_iid"},
			subList("merge_request_iid", "/merge_requests/%s/diffs"), pProject, mr, pPage),
		restRead("list_all_merge_request_notes", "List the comments of a merge request, oldest first, 20 per page.", []string{"merge_request_iid"},
			subList("merge_request_iid", "/merge_requests/%s/notes?sort=asc"), pProject, mr, pPage),
		restRead("get_pipeline_failing_jobs", "List the failed jobs of a pipeline.", []string{"pipeline_id"},
			subList("pipeline_id", "/pipelines/%s/jobs?scope[]=failed"), pProject, [3]string{"pipeline_id", "integer", "Pipeline id."}),
		restRead("get_job_logs", "Show the end of a CI job's log.", []string{"job_id"},
			sub("job_id", "/jobs/%s/trace"), pProject, [3]string{"job_id", "integer", "Job id."}),
		restRead("get_commit", "Show one commit by SHA.", []string{"commit_sha"},
			sub("commit_sha", "/repository/commits/%s"), pProject, [3]string{"commit_sha", "string", "Commit SHA."}),
		restRead("list_commits", "List recent commits of the default branch or ref_name, 20 per page.", nil,
			func(p string, a map[string]any) (string, error) {
				ref, _ := str(a, "ref_name", false)
				s := p + "/repository/commits"
				if ref != "" {
					s += "?ref_name=" + url.QueryEscape(ref)
				}
				return gitlabapi.Paged(s, page(a)), nil
			}, pProject, [3]string{"ref_name", "string", "Branch or tag (default: the default branch)."}, pPage),
		restRead("get_commit_diff", "Show the file diffs of one commit, 20 files per page.", []string{"commit_sha"},
			subList("commit_sha", "/repository/commits/%s/diff"), pProject, [3]string{"commit_sha", "string", "Commit SHA."}, pPage),
		restRead("get_repository_file", "Read one file of the repository at a ref.", []string{"file_path"},
			func(p string, a map[string]any) (string, error) {
				fp, err := str(a, "file_path", true)
				if err != nil {
					return "", err
				}
				ref, _ := str(a, "ref", false)
				if ref == "" {
					ref = "HEAD"
				}
				return p + "/repository/files/" + url.PathEscape(fp) + "/raw?ref=" + url.QueryEscape(ref), nil
			}, pProject, [3]string{"file_path", "string", "Path of the file in the repository."}, [3]string{"ref", "string", "Branch, tag or SHA (default HEAD)."}),
		restRead("list_repository_tree", "List files and directories of the repository, 20 per page.", nil,
			func(p string, a map[string]any) (string, error) {
				dir, _ := str(a, "path", false)
				s := p + "/repository/tree"
				if dir != "" {
					s += "?path=" + url.QueryEscape(dir)
				}
				return gitlabapi.Paged(s, page(a)), nil
			}, pProject, [3]string{"path", "string", "Directory (default: the root)."}, pPage),
		restRead("get_wiki_page", "Read one wiki page of a project by slug.", []string{"slug"},
			sub("slug", "/wikis/%s"), pProject, [3]string{"slug", "string", "The page's slug."}),
		restRead("list_vulnerabilities", "List the project's vulnerabilities, 20 per page.", nil,
			list("/vulnerabilities"), pProject, pPage),
		restRead("gitlab_issue_search", "Search the project's issues for words.", []string{"search"},
			searchIn("issues"), pProject, [3]string{"search", "string", "Words to look for."}, pPage),
		restRead("gitlab_merge_request_search", "Search the project's merge requests for words.", []string{"search"},
			searchIn("merge_requests"), pProject, [3]string{"search", "string", "Words to look for."}, pPage),
		restRead("gitlab_blob_search", "Search the project's code for words.", []string{"search"},
			searchIn("blobs"), pProject, [3]string{"search", "string", "Words to look for."}, pPage),
	}
}

func searchIn(scope string) func(p string, a map[string]any) (string, error) {
	return func(p string, a map[string]any) (string, error) {
		q, err := str(a, "search", true)
		if err != nil {
			return "", err
		}
		return gitlabapi.Paged(p+"/search?scope="+scope+"&search="+url.QueryEscape(q), page(a)), nil
	}
}

// restWrite is a GitLab tool that changes something (approval required).
func restWrite(name, desc, method string, required []string, path func(p string, a map[string]any) (string, error), body []string, props ...[3]string) *flowtools.Tool {
	return &flowtools.Tool{
		Name: name, Description: desc, Privilege: PrivReadWriteGitLab, Write: true,
		Params: schema(required, props...),
		Run: func(ctx context.Context, env *flowtools.Env, args map[string]any) (string, error) {
			apiPath, err := apiPathFor(env, args, path)
			if err != nil {
				return "", err
			}
			b := map[string]any{}
			for _, k := range body {
				if v, ok := args[k]; ok {
					b[k] = v
				}
			}
			r, err := env.GitLab.Do(ctx, method, apiPath, b)
			if err != nil {
				return "", err
			}
			return boundResult(compactJSON(r.Body)), nil
		},
	}
}

func gitlabWriteTools() []*flowtools.Tool {
	mr, issue := pIID("merge_request"), pIID("work_item")
	pBody := [3]string{"body", "string", "Comment text (Markdown)."}
	pTitle := [3]string{"title", "string", "Title."}
	pDesc := [3]string{"description", "string", "Description (Markdown)."}
	return []*flowtools.Tool{
		restWrite("create_merge_request_note", "Comment on a merge request.", "POST", []string{"merge_request_iid", "body"},
			sub("merge_request_iid", "/merge_requests/%s/notes"), []string{"body"}, pProject, mr, pBody),
		restWrite("create_work_item_note", "Comment on a work item (issue).", "POST", []string{"work_item_iid", "body"},
			sub("work_item_iid", "/issues/%s/notes"), []string{"body"}, pProject, issue, pBody),
		restWrite("create_work_item", "Create a work item (issue).", "POST", []string{"title"},
			func(p string, _ map[string]any) (string, error) { return p + "/issues", nil }, []string{"title", "description", "labels"},
			pProject, pTitle, pDesc, [3]string{"labels", "string", "Comma-separated labels."}),
		restWrite("update_work_item", "Change a work item's title, description or state.", "PUT", []string{"work_item_iid"},
			sub("work_item_iid", "/issues/%s"), []string{"title", "description", "state_event"},
			pProject, issue, pTitle, pDesc, [3]string{"state_event", "string", "close or reopen."}),
		restWrite("create_merge_request", "Open a merge request from a branch.", "POST", []string{"source_branch", "target_branch", "title"},
			func(p string, _ map[string]any) (string, error) { return p + "/merge_requests", nil }, []string{"source_branch", "target_branch", "title", "description"},
			pProject, [3]string{"source_branch", "string", "Branch with the changes."}, [3]string{"target_branch", "string", "Branch to merge into."}, pTitle, pDesc),
		restWrite("update_merge_request", "Change a merge request's title, description or state.", "PUT", []string{"merge_request_iid"},
			sub("merge_request_iid", "/merge_requests/%s"), []string{"title", "description", "state_event"},
			pProject, mr, pTitle, pDesc, [3]string{"state_event", "string", "close or reopen."}),
		restWrite("create_commit", "Commit file changes to a branch. actions is a JSON array of {action: create|update|delete, file_path, content}.", "POST",
			[]string{"branch", "commit_message", "actions"},
			func(p string, _ map[string]any) (string, error) { return p + "/repository/commits", nil }, []string{"branch", "commit_message", "actions", "start_branch"},
			pProject, [3]string{"branch", "string", "Branch to commit to."}, [3]string{"start_branch", "string", "Create branch from this one."},
			[3]string{"commit_message", "string", "Commit message."}, [3]string{"actions", "array", "File actions."}),
	}
}

// compactJSON drops insignificant whitespace from a JSON body; other text
// is returned as is.
func compactJSON(b []byte) string {
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		return string(b)
	}
	return out.String()
}
