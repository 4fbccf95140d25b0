// Package executortools are the local tools a CI job's or IDE's executor
// runs for a flow — read_file(s), create_file_with_contents, edit_file,
// list_dir, find_files, grep, mkdir, run_command, run_git_command — with
// GitLab's tool names and argument shapes, sent as the executor actions of
// the DuoWorkflow contract. Executor errors come back as tool errors for
// the model; long outputs are truncated with a note.
package executortools
