//go:build !duo_production

package appliance

// SandboxBuilt reports whether this build may run against a sandbox backend
// (test roots). Developer builds may; the packaged build (tag duo_production)
// may not, so a production install cannot trust test roots even by mistake.
const SandboxBuilt = true
