// Package layers holds no code: its test enforces the dependency rules of
// docs/architecture.md ("Dependency rules") on the non-test code of every
// package in the module, so a layer violation fails `go test`.
package layers
