//go:build duo_production

package appliance

// SandboxBuilt reports whether this build may run against a sandbox backend
// (test roots). The packaged build (tag duo_production) may not.
const SandboxBuilt = false
