package codereview

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flowtools"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/gitlabapi"
)

// Bounds of the review context.
const (
	maxDiffPages   = 10 // × gitlabapi.PerPage files
	maxContextSize = 160 << 10
	// Whole files (the source branch's version of modified files) are
	// added while they fit: at most maxWholeFiles, each up to maxWholeFile.
	maxWholeFiles = 5
	maxWholeFile  = 12 << 10
)

// WholeFiles reads the source branch's version of modified (not new, not
// deleted) files, the smallest diffs first, within the bounds; a file that
// cannot be read is left out.
func WholeFiles(ctx context.Context, gl *gitlabapi.Client, project string, mr *MergeRequest, files []FileDiff) map[string]string {
	out := map[string]string{}
	for _, f := range files {
		if len(out) >= maxWholeFiles {
			break
		}
		if f.NewFile || f.DeletedFile || f.NewPath == "" {
			continue
		}
		p := gitlabapi.ProjectPath(project) + "/repository/files/" + url.PathEscape(f.NewPath) + "/raw?ref=" + url.QueryEscape(mr.SourceBranch)
		r, err := gl.Do(ctx, "GET", p, nil)
		if err != nil {
			if ctx.Err() != nil {
				return out
			}
			continue
		}
		if len(r.Body) <= maxWholeFile {
			out[f.NewPath] = string(r.Body)
		}
	}
	return out
}

// MergeRequest is what the review reads of a merge request.
type MergeRequest struct {
	IID          int    `json:"iid"`
	Title        string `json:"title"`
	Description  string `json:"description"`
	SourceBranch string `json:"source_branch"`
	TargetBranch string `json:"target_branch"`
}

type apiDiff struct {
	OldPath     string `json:"old_path"`
	NewPath     string `json:"new_path"`
	Diff        string `json:"diff"`
	NewFile     bool   `json:"new_file"`
	RenamedFile bool   `json:"renamed_file"`
	DeletedFile bool   `json:"deleted_file"`
}

func mrPath(project, iid string) string {
	return gitlabapi.ProjectPath(project) + "/merge_requests/" + url.PathEscape(iid)
}

// Fetch reads a merge request and its diffs (bounded pages).
func Fetch(ctx context.Context, gl *gitlabapi.Client, project, iid string) (*MergeRequest, []FileDiff, error) {
	var mr MergeRequest
	if err := gl.JSON(ctx, "GET", mrPath(project, iid), nil, &mr); err != nil {
		return nil, nil, err
	}
	var files []FileDiff
	for page := 1; page <= maxDiffPages; page++ {
		var batch []apiDiff
		if err := gl.JSON(ctx, "GET", gitlabapi.Paged(mrPath(project, iid)+"/diffs", page), nil, &batch); err != nil {
			return nil, nil, err
		}
		for _, d := range batch {
			files = append(files, FileDiff{OldPath: d.OldPath, NewPath: d.NewPath, Diff: d.Diff, NewFile: d.NewFile, DeletedFile: d.DeletedFile, RenamedFile: d.RenamedFile})
		}
		if len(batch) < gitlabapi.PerPage {
			break
		}
	}
	return &mr, files, nil
}

// LinesByFile maps each changed file (new path; old path for deletions)
// to its commentable lines.
func LinesByFile(files []FileDiff) map[string]Lines {
	out := map[string]Lines{}
	for _, f := range files {
		p := f.NewPath
		if p == "" || f.DeletedFile {
			p = f.OldPath
		}
		out[p] = DiffLines(f.Diff)
	}
	return out
}

// ContextText renders the review context: the merge request, each file's
// diff with line numbers and the whole files given, bounded.
func ContextText(mr *MergeRequest, files []FileDiff, whole map[string]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Merge request !%d: %s\nSource branch %s into %s\n", mr.IID, mr.Title, mr.SourceBranch, mr.TargetBranch)
	if d := strings.TrimSpace(mr.Description); d != "" {
		fmt.Fprintf(&b, "Description:\n%s\n", flowtools.Truncate(d, 4096))
	}
	fmt.Fprintf(&b, "\n%d changed files. Each diff line shows its old and new line number, then the line.\n", len(files))
	for i, f := range files {
		kind := "modified"
		switch {
		case f.NewFile:
			kind = "new file"
		case f.DeletedFile:
			kind = "deleted"
		case f.RenamedFile:
			kind = "renamed from " + f.OldPath
		}
		section := fmt.Sprintf("\n== %s (%s) ==\n%s", f.NewPath, kind, Annotate(f.Diff))
		if b.Len()+len(section) > maxContextSize {
			fmt.Fprintf(&b, "\n[%d more files left out to fit the context; read them with the repository tools:", len(files)-i)
			for _, rest := range files[i:] {
				b.WriteString(" " + rest.NewPath)
			}
			b.WriteString("]\n")
			break
		}
		b.WriteString(section)
	}
	for _, f := range files {
		content, ok := whole[f.NewPath]
		if !ok {
			continue
		}
		section := fmt.Sprintf("\n== whole file %s (source branch, for context; comment only on diff lines) ==\n%s\n", f.NewPath, numbered(content))
		if b.Len()+len(section) > maxContextSize {
			break
		}
		b.WriteString(section)
	}
	return b.String()
}

// numbered prefixes each line with its number.
func numbered(s string) string {
	var b strings.Builder
	for i, line := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		fmt.Fprintf(&b, "%4d  %s\n", i+1, line)
	}
	return b.String()
}

func projectAndIID(env *flowtools.Env, args map[string]any) (string, string, error) {
	p, err := flowtools.String(args, "project_id", false)
	if err != nil {
		return "", "", err
	}
	if p == "" {
		p = env.ProjectID()
	}
	if p == "" {
		return "", "", fmt.Errorf("%w: project_id is required", flowtools.ErrBadArgs)
	}
	iid, err := flowtools.String(args, "merge_request_iid", true)
	if err != nil {
		return "", "", err
	}
	iid = strings.TrimPrefix(strings.TrimSpace(iid), "!")
	return p, iid, nil
}

var (
	pProject = [3]string{"project_id", "string", "The project's id or full path (default: the workflow's project)."}
	pIID     = [3]string{"merge_request_iid", "integer", "The merge request's number in the project."}
)

// Tools returns build_review_merge_request_context and
// post_duo_code_review.
func Tools() []*flowtools.Tool {
	return []*flowtools.Tool{
		{
			Name:        "build_review_merge_request_context",
			Description: "Read a merge request for review: its title, description and every changed file's diff with line numbers.",
			Params:      flowtools.Schema([]string{"merge_request_iid"}, pProject, pIID),
			Privilege:   flowtools.ReadOnlyGitLab,
			Run: func(ctx context.Context, env *flowtools.Env, args map[string]any) (string, error) {
				p, iid, err := projectAndIID(env, args)
				if err != nil {
					return "", err
				}
				mr, files, err := Fetch(ctx, env.GitLab, p, iid)
				if err != nil {
					return "", err
				}
				return ContextText(mr, files, WholeFiles(ctx, env.GitLab, p, mr, files)), nil
			},
		},
		{
			Name: "post_duo_code_review",
			Description: "Publish the review on the merge request. review_output is <review>, an optional <summary>…</summary>, then one " +
				"<comment file=\"path\" old_line=\"\" new_line=\"12\">text</comment> per finding on a line of the diff (new_line for added or unchanged lines, old_line only for removed lines), then </review>.",
			Params:    flowtools.Schema([]string{"merge_request_iid", "review_output"}, pProject, pIID, [3]string{"review_output", "string", "The review in the format above."}),
			Privilege: flowtools.ReadWriteGitLab,
			Write:     true,
			Run:       postReview,
		},
	}
}

// AddCommentsPath is GitLab's endpoint for DAP review comments.
const AddCommentsPath = "/api/v4/ai/duo_workflows/code_review/add_comments"

func postReview(ctx context.Context, env *flowtools.Env, args map[string]any) (string, error) {
	p, iid, err := projectAndIID(env, args)
	if err != nil {
		return "", err
	}
	raw, err := flowtools.String(args, "review_output", true)
	if err != nil {
		return "", err
	}
	_, files, err := Fetch(ctx, env.GitLab, p, iid)
	if err != nil {
		return "", err
	}
	lines := LinesByFile(files)
	text, notes, err := Correct(raw, lines)
	if err != nil {
		return "", fmt.Errorf("%w: %v", flowtools.ErrBadArgs, err)
	}
	kept := Parse(text)
	if len(kept.Comments) == 0 && len(Parse(raw).Comments)+Parse(raw).Invalid > 0 {
		return "", fmt.Errorf("%w: none of the comments is on a line of this merge request's diff (%s); use the line numbers shown in the review context", flowtools.ErrBadArgs, strings.Join(notes, "; "))
	}
	if err := Check(text, lines); err != nil {
		// Write and Correct guarantee this; refuse rather than post malformed.
		return "", fmt.Errorf("the corrected review failed its check: %v", err)
	}
	body := map[string]any{"project_id": p, "merge_request_iid": atoiOr(iid), "review_output": text}
	if env.Workflow != nil && env.Workflow.ID != "" {
		body["workflow_id"] = env.Workflow.ID
	}
	var resp struct {
		Message string `json:"message"`
	}
	if err := env.GitLab.JSON(ctx, "POST", AddCommentsPath, body, &resp); err != nil {
		return "", err
	}
	if resp.Message != "Comments added successfully" {
		return "", fmt.Errorf("GitLab did not confirm the review: %q", bound(resp.Message, 200))
	}
	out := map[string]any{"status": "success", "message": "Review posted to MR !" + iid, "comments": len(kept.Comments)}
	if len(notes) > 0 {
		out["corrections"] = notes
	}
	b, _ := json.Marshal(out)
	return string(b), nil
}

func atoiOr(s string) any {
	var n int
	if _, err := fmt.Sscanf(s, "%d", &n); err == nil && fmt.Sprint(n) == s {
		return n
	}
	return s
}
