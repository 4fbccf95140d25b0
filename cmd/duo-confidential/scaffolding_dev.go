//go:build !duo_production

package main

// scaffoldingCommands are the commands that run test scaffolding — the
// sandbox backend with its throwaway vendor roots and the demo GitLab token
// issuer. Developer builds (`go run ./cmd/duo-confidential demo`) have them;
// the packaged build (tag duo_production, set by packaging) does not link
// them at all.
type scaffoldingCommands struct {
	Demo    DemoCmd    `cmd:"" help:"Run the proxy against an embedded sandbox backend (NOT confidential) and print ready-to-paste requests."`
	Sandbox SandboxCmd `cmd:"" help:"Run the sandbox backend alone (NOT confidential), for interoperability tests and benchmarks."`
}

// testRootsBuilt reports whether this build accepts test vendor roots
// (`serve --sandbox`, `attest verify --test-roots`).
const testRootsBuilt = true
