// Package appliance is the composition root below the CLI: from a
// configuration (package appliance/config) it builds the attesting proxy
// with its trust manager, the GitLab gateway with GitLab's keys and its own,
// a certificate for every listener and the admin UI, and runs them. It owns
// their lifecycle: start, readiness (which part is missing and why), Reload
// on SIGHUP (certificate files and renewals; other changes need a restart)
// and drain on shutdown, the gateway before the proxy its streams use.
//
// Sandbox mode (Sandbox, SandboxFor) trusts a local, NOT confidential
// backend; only the demo, tests and benchmarks construct it. The
// installation checks live in appliance/doctor.
package appliance
