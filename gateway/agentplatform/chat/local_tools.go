package chat

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flowtools"
)

// maxMCPTools bounds the MCP tools a client may offer one session.
const maxMCPTools = 64

// executorTool runs one action on the client's executor and returns its
// plain-text answer.
func executorTool(name, desc, priv string, write bool, required []string, build func(a map[string]any) (*contract.Action, error), props ...[3]string) *flowtools.Tool {
	return &flowtools.Tool{
		Name: name, Description: desc, Privilege: priv, Write: write, Params: schema(required, props...),
		Run: func(ctx context.Context, env *flowtools.Env, args map[string]any) (string, error) {
			a, err := build(args)
			if err != nil {
				return "", err
			}
			r, err := env.Session.Do(ctx, a)
			if err != nil {
				return "", err
			}
			return plainText(r)
		},
	}
}

// plainText reads an executor's textual answer (or an HTTP body, which
// some executors return instead).
func plainText(r *contract.ActionResponse) (string, error) {
	if p := r.GetPlainTextResponse(); p != nil {
		if p.GetError() != "" {
			return "", fmt.Errorf("the executor reported: %s", boundResult(p.GetError()))
		}
		return boundResult(p.GetResponse()), nil
	}
	if h := r.GetHttpResponse(); h != nil {
		if h.GetError() != "" {
			return "", fmt.Errorf("the executor reported: %s", boundResult(h.GetError()))
		}
		return boundResult(h.GetBody()), nil
	}
	return "", fmt.Errorf("the executor answered with nothing")
}

func strArg(a map[string]any, name string) (string, error) { return str(a, name, true) }

func localTools() []*flowtools.Tool {
	pPath := [3]string{"file_path", "string", "Path relative to the workspace root."}
	return []*flowtools.Tool{
		executorTool("read_file", "Read a file of the local workspace.", PrivReadWriteFiles, false, []string{"file_path"},
			func(a map[string]any) (*contract.Action, error) {
				p, err := strArg(a, "file_path")
				return &contract.Action{Action: &contract.Action_RunReadFile{RunReadFile: &contract.ReadFile{Filepath: p}}}, err
			}, pPath),
		executorTool("list_dir", "List a directory of the local workspace.", PrivReadWriteFiles, false, []string{"directory"},
			func(a map[string]any) (*contract.Action, error) {
				d, err := strArg(a, "directory")
				return &contract.Action{Action: &contract.Action_ListDirectory{ListDirectory: &contract.ListDirectory{Directory: d}}}, err
			}, [3]string{"directory", "string", "Directory relative to the workspace root."}),
		executorTool("find_files", "Find files of the local workspace by name pattern (glob).", PrivReadWriteFiles, false, []string{"name_pattern"},
			func(a map[string]any) (*contract.Action, error) {
				p, err := strArg(a, "name_pattern")
				return &contract.Action{Action: &contract.Action_FindFiles{FindFiles: &contract.FindFiles{NamePattern: p}}}, err
			}, [3]string{"name_pattern", "string", "Glob such as *.go."}),
		executorTool("grep", "Search the local workspace's files for a pattern.", PrivReadWriteFiles, false, []string{"pattern"},
			func(a map[string]any) (*contract.Action, error) {
				p, err := strArg(a, "pattern")
				dir, _ := str(a, "search_directory", false)
				ci, _ := a["case_insensitive"].(bool)
				return &contract.Action{Action: &contract.Action_Grep{Grep: &contract.Grep{Pattern: p, SearchDirectory: dir, CaseInsensitive: ci}}}, err
			}, [3]string{"pattern", "string", "Pattern to search for."}, [3]string{"search_directory", "string", "Directory (default: root)."},
			[3]string{"case_insensitive", "boolean", "Ignore case."}),
		executorTool("create_file_with_contents", "Create or replace a file in the local workspace.", PrivReadWriteFiles, true, []string{"file_path", "contents"},
			func(a map[string]any) (*contract.Action, error) {
				p, err := strArg(a, "file_path")
				if err != nil {
					return nil, err
				}
				c, err := str(a, "contents", false)
				return &contract.Action{Action: &contract.Action_RunWriteFile{RunWriteFile: &contract.WriteFile{Filepath: p, Contents: c}}}, err
			}, pPath, [3]string{"contents", "string", "The whole new content."}),
		executorTool("edit_file", "Replace one exact string in a local file.", PrivReadWriteFiles, true, []string{"file_path", "old_str", "new_str"},
			func(a map[string]any) (*contract.Action, error) {
				p, err := strArg(a, "file_path")
				if err != nil {
					return nil, err
				}
				o, err := strArg(a, "old_str")
				if err != nil {
					return nil, err
				}
				n, err := str(a, "new_str", false)
				return &contract.Action{Action: &contract.Action_RunEditFile{RunEditFile: &contract.EditFile{Filepath: p, OldString: o, NewString: n}}}, err
			}, pPath, [3]string{"old_str", "string", "Exact text to replace."}, [3]string{"new_str", "string", "Replacement."}),
		executorTool("mkdir", "Create a directory in the local workspace.", PrivReadWriteFiles, true, []string{"directory_path"},
			func(a map[string]any) (*contract.Action, error) {
				d, err := strArg(a, "directory_path")
				return &contract.Action{Action: &contract.Action_Mkdir{Mkdir: &contract.Mkdir{DirectoryPath: d}}}, err
			}, [3]string{"directory_path", "string", "Directory to create."}),
		executorTool("run_command", "Run a program with arguments in the local workspace.", PrivRunCommands, true, []string{"program"},
			func(a map[string]any) (*contract.Action, error) {
				p, err := strArg(a, "program")
				var args []string
				if list, ok := a["args"].([]any); ok {
					for _, x := range list {
						if s, ok := x.(string); ok {
							args = append(args, s)
						}
					}
				}
				return &contract.Action{Action: &contract.Action_RunCommand{RunCommand: &contract.RunCommandAction{Program: p, Arguments: args}}}, err
			}, [3]string{"program", "string", "Program to run."}, [3]string{"args", "array", "Arguments."}),
	}
}

// mcpTool wraps a client-offered MCP tool; it runs as runMCPTool and needs
// approval unless the client marks it trusted.
func mcpTool(m *contract.McpTool) *flowtools.Tool {
	if m.GetName() == "" || len(m.GetName()) > 128 {
		return nil
	}
	params := map[string]any{"type": "object", "properties": map[string]any{}}
	if s := m.GetInputSchema(); s != "" && len(s) <= 64<<10 {
		var p map[string]any
		if json.Unmarshal([]byte(s), &p) == nil && p != nil {
			params = p
		}
	}
	name := m.GetName()
	return &flowtools.Tool{
		Name: name, Description: boundResult(m.GetDescription()), Params: params, Privilege: PrivRunMCPTools, Write: !m.GetTrusted(),
		Run: func(ctx context.Context, env *flowtools.Env, args map[string]any) (string, error) {
			b, err := json.Marshal(args)
			if err != nil {
				return "", err
			}
			r, err := env.Session.Do(ctx, &contract.Action{Action: &contract.Action_RunMCPTool{RunMCPTool: &contract.RunMCPTool{Name: name, Args: string(b)}}})
			if err != nil {
				return "", err
			}
			return plainText(r)
		},
	}
}
