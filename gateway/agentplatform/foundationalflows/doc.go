// Package foundationalflows are this service's definitions of GitLab's
// foundational flows — code_review/v1, developer/v1, fix_pipeline/v1 and
// convert_to_gl_ci/v1, resolved from workflowDefinition exactly as GitLab
// names them — written in the flow registry v1 schema with this project's
// own prompts (GitLab's flow YAML and prompt texts are EE-licensed and not
// used), plus the runner for inline flowConfig custom flows. Any other
// definition is refused by the session engine, never rerouted.
package foundationalflows
