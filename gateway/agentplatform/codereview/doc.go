// Package codereview is DAP Code Review's review machinery: the review
// context built from a merge request's changes (diffs annotated with line
// numbers), the review XML GitLab's add_comments endpoint reads
// (<review> with <comment file old_line new_line> entries and an optional
// <summary>) — a writer that always produces it well-formed, a checker
// written from GitLab's documented parsing rules, and the correction step
// that drops comments on lines the diff does not have — and the tools
// build_review_merge_request_context and post_duo_code_review.
package codereview
