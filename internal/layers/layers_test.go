package layers

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// module is the import path prefix of our packages.
const module = "github.com/duo-confidential/duo-confidential/"

// testOnly are the packages that exist for tests and the demo; the data
// plane and its leaves never link them outside tests (the appliance and the
// CLI still do for the demo and sandbox commands; issue 12 item 2).
var testOnly = []string{
	"proxy/attest/attesttest",
	"proxy/sandbox",
	"gateway/gitlabtest",
	"tls/pebbletest",
}

// rule forbids the packages matching from (in their non-test code, directly
// or through other packages) to depend on any package matching forbid.
// A pattern "a/..." matches a and everything under it; "a" matches a only.
type rule struct {
	from   string
	forbid []string
	why    string
}

// rules are docs/architecture.md's "Dependency rules", in the same order.
var rules = []rule{
	{"internal/...", []string{"appliance/...", "cmd/...", "gateway/...", "jwks/...", "proxy/...", "tls/...", "ui/..."},
		"internal/ holds shared leaves: they import nothing of ours above them"},
	{"proxy/...", []string{"appliance/...", "cmd/...", "gateway/...", "ui/..."},
		"the proxy is the data plane's bottom layer: it never imports the gateway, the admin UI or the appliance"},
	{"gateway/...", []string{"appliance/...", "cmd/...", "ui/..."},
		"the gateway reaches models only through the proxy and never imports the appliance or the admin UI"},
	{"jwks/...", []string{"appliance/...", "cmd/...", "gateway/...", "proxy/...", "tls/...", "ui/..."},
		"jwks is a leaf: key sets, nothing else"},
	{"tls/...", []string{"appliance/...", "cmd/...", "gateway/...", "jwks/...", "proxy/...", "ui/..."},
		"tls is a leaf: certificates for listeners, nothing else"},
	{"ui/...", []string{"appliance/...", "cmd/...", "proxy", "gateway"},
		"the admin UI reads state through interfaces; it never imports the appliance or the data-plane servers"},
	{"appliance/config/...", []string{"appliance", "appliance/doctor/...", "cmd/...", "ui/..."},
		"configuration is below wiring: it never imports the appliance, doctor or the UI"},
	{"appliance", []string{"appliance/doctor/...", "cmd/..."},
		"the appliance does not run the doctor's checks"},
}

// testOnlyRules: no non-test code of proxy, gateway, jwks, tls or ui links
// a test-only package, except the test-only packages themselves.
func testOnlyRules() []rule {
	var rs []rule
	for _, from := range []string{"proxy/...", "gateway/...", "jwks/...", "tls/...", "ui/..."} {
		rs = append(rs, rule{from, testOnly, "test scaffolding (throwaway vendor chains, sandbox, demo issuer, pebble) never ships in the data plane"})
	}
	return rs
}

// testTools are the packages that exist only for tests: no non-test code
// of ours imports them, not even the test scaffolding the demo links.
var testTools = []string{
	"internal/testutil",
	"proxy/attest/verifiertest",
}

// testToolRules: no non-test code anywhere links a test tool.
func testToolRules() []rule {
	var rs []rule
	for _, from := range []string{"appliance/...", "cmd/...", "gateway/...", "internal/...", "jwks/...", "proxy/...", "tls/...", "ui/..."} {
		rs = append(rs, rule{from, testTools, "test tools (golden files, fake clock, log buffer, verifier fixtures) are imported by tests only"})
	}
	return rs
}

// pkg is one package as `go list -json` describes it.
type pkg struct {
	ImportPath string
	Deps       []string // every package its non-test code depends on
}

func match(path, pattern string) bool {
	if root, ok := strings.CutSuffix(pattern, "/..."); ok {
		return path == root || strings.HasPrefix(path, root+"/")
	}
	return path == pattern
}

func matchAny(path string, patterns []string) bool {
	return slices.ContainsFunc(patterns, func(p string) bool { return match(path, p) })
}

// violations lists every dependency that breaks a rule, as
// "from -> dep: why". Paths are relative to the module.
func violations(pkgs []pkg, rules []rule) []string {
	var out []string
	for _, p := range pkgs {
		from, ok := strings.CutPrefix(p.ImportPath, module)
		if !ok {
			continue
		}
		for _, r := range rules {
			if !match(from, r.from) {
				continue
			}
			for _, d := range p.Deps {
				dep, ok := strings.CutPrefix(d, module)
				if !ok || !matchAny(dep, r.forbid) {
					continue
				}
				if (matchAny(from, testOnly) || matchAny(from, testTools)) && matchAny(dep, testOnly) {
					continue // test scaffolding may build on test scaffolding
				}
				out = append(out, from+" -> "+dep+": "+r.why)
			}
		}
	}
	return out
}

// listModule runs `go list -json` over the whole module (non-test code only:
// Deps never includes test imports).
func listModule(t *testing.T) []pkg {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command on PATH")
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("go", "list", "-json=ImportPath,Deps", module+"...")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []pkg
	dec := json.NewDecoder(&stdout)
	for {
		var p pkg
		err := dec.Decode(&p)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// TestDependencyRules fails when any package breaks a rule of
// docs/architecture.md.
func TestDependencyRules(t *testing.T) {
	pkgs := listModule(t)
	seen := map[string]bool{}
	for _, p := range pkgs {
		seen[strings.TrimPrefix(p.ImportPath, module)] = true
	}
	// The rules name real packages: a rename must update them.
	for _, want := range append([]string{"proxy", "gateway", "ui", "appliance", "appliance/config", "appliance/doctor", "internal/statedir", "jwks", "tls"}, slices.Concat(testOnly, testTools)...) {
		if !seen[want] {
			t.Errorf("package %s named by the rules is not in the module; update the rules and docs/architecture.md", want)
		}
	}
	for _, v := range violations(pkgs, slices.Concat(rules, testOnlyRules(), testToolRules())) {
		t.Error(v)
	}
}

// TestViolationsFindsBreaks: the checker reports what the rules forbid,
// transitively, and nothing else.
func TestViolationsFindsBreaks(t *testing.T) {
	m := func(s ...string) []string {
		for i := range s {
			s[i] = module + s[i]
		}
		return s
	}
	pkgs := []pkg{
		{module + "internal/sse", nil},
		{module + "internal/bad", m("internal/sse", "proxy/envelope")},
		{module + "proxy", append(m("internal/sse", "gateway/model"), "fmt")},
		{module + "proxy/sandbox", m("proxy/attest/attesttest")},
		{module + "gateway/model", m("internal/sse")},
		{module + "gateway", m("gateway/gitlabtest", "jwks")},
		{module + "ui", m("proxy/attest", "proxy")},
		{module + "ui/inner", m("gateway/keys")},
		{module + "appliance", m("proxy/sandbox", "ui", "appliance/config")},
		{module + "appliance/config", m("appliance/configx")},
		{module + "jwks", m("internal/testutil")},
		{"example.com/other", m("appliance")},
	}
	got := violations(pkgs, slices.Concat(rules, testOnlyRules(), testToolRules()))
	want := []string{
		"internal/bad -> proxy/envelope",
		"proxy -> gateway/model",
		"gateway -> gateway/gitlabtest",
		"ui -> proxy",
		"jwks -> internal/testutil",
	}
	if len(got) != len(want) {
		t.Fatalf("got %d violations, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]+": ") {
			t.Errorf("violation %d = %q, want %q…", i, got[i], want[i])
		}
	}
}
