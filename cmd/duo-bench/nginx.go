package main

// NginxResult is part 7's result; it is filled in by nginx.go.
type NginxResult struct{}
