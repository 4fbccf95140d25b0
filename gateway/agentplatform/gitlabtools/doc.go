// Package gitlabtools are the GitLab API tools the foundational flows use
// (repository files and tree, issues, pipelines and job logs, merge
// request creation), each one REST call through the executor's
// runHTTPRequest with GitLab's tool names and argument shapes, paged and
// bounded.
package gitlabtools
