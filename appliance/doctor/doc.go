// Package doctor checks an installation from the appliance's side — the
// configuration, the state directory's files, TLS, GitLab's keys,
// attestation and the running appliance as a client and as GitLab see it —
// and prints a report with a fix for every failure.
package doctor
