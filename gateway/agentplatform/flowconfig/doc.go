// Package flowconfig parses and validates flow definitions in GitLab's flow
// registry v1 schema (the YAML of foundational flows and the inline
// flowConfig GitLab sends in a startRequest) into a checked Config whose
// prompts are resolved against this service's own prompt registry. Every
// error names the key that is wrong (e.g. "components[1].toolset[0]").
//
// Only the schema's keys are GitLab's interface; the flows and prompts this
// service runs are its own text.
package flowconfig
