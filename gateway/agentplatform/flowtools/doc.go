// Package flowtools is what flows call tools through: the Tool type (name,
// JSON-Schema parameters, the agent privilege that gates it, whether it
// changes something), the per-session environment a tool runs in, privilege
// and pre-approval filtering as GitLab's tools registry does it, argument
// readers, and result truncation with a note the model can act on.
package flowtools
