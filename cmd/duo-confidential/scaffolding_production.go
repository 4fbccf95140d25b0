//go:build duo_production

package main

// scaffoldingCommands is empty in the packaged build: no demo, no sandbox.
type scaffoldingCommands struct{}

// testRootsBuilt reports whether this build accepts test vendor roots; the
// packaged build never does.
const testRootsBuilt = false
