package ui

import (
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"
)

// pages and a string each must show.
var pageWants = map[string][]string{
	"/admin/":            {"<h1>Overview</h1>", "Attestation", "tdx evidence accepted 10m ago", "2 keys loaded", "v1.2.3-test"},
	"/admin/attestation": {"MRTD", "UpToDate", "SWHardeningNeeded", "INTEL-SA-00615", "accepted by operator policy", "TDX TCB info", "hash chain verified", "stale", strings.Repeat("a", 64)},
	"/admin/gitlab": {"Local AI Gateway URL", "custom_openai/code-small", "custom_openai/chat-large", "Indirect connections", "model_configuration%2Fcheck", "test fixture: no model",
		"Local Duo Agent Platform service URL", "DUO_AGENT_PLATFORM_SERVICE_SECURE=true", "Workhorse trusts only the system roots", "update-ca-certificates", "Agentic Chat", "gitlab--duo", "code_review/v1"},
	"/admin/keys":    {"Rotate signing key", "signing", "2048 bits", "oauth/discovery/keys"},
	"/admin/tls":     {"duo.example.com, 10.0.0.5", "duo-confidential internal CA", "soon"},
	"/admin/traffic": {"GitLab AI gateway", "Attesting proxy", "No requests yet."},
}

func TestEveryPageNeedsLogin(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	c := f.client()
	for p := range pageWants {
		r := f.do(c, http.MethodGet, p, nil)
		if r.status != http.StatusSeeOther || !strings.HasPrefix(r.header.Get("Location"), "/login?next=") {
			t.Errorf("GET %s without a session: %d %s", p, r.status, r.header.Get("Location"))
		}
	}
	tests := []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/api/status", http.StatusUnauthorized},
		{http.MethodGet, "/metrics", http.StatusUnauthorized},
		{http.MethodPost, "/admin/keys/rotate", http.StatusForbidden},
		{http.MethodGet, "/admin/nothing", http.StatusSeeOther},
		{http.MethodGet, "/elsewhere", http.StatusNotFound},
	}
	for _, tc := range tests {
		if r := f.do(c, tc.method, tc.path, url.Values{}); r.status != tc.want {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, r.status, tc.want)
		}
	}
	if r := f.do(c, http.MethodGet, "/api/status", nil, "Authorization", "Bearer wrong"); r.status != http.StatusUnauthorized {
		t.Errorf("wrong token: %d", r.status)
	}
	if r := f.do(c, http.MethodGet, "/api/status", nil, "Authorization", "Bearer "+testToken); r.status != http.StatusOK {
		t.Errorf("admin token on /api/status: %d", r.status)
	}
	if r := f.do(c, http.MethodGet, "/metrics", nil, "Authorization", "Bearer "+testToken); r.status != http.StatusOK || !strings.Contains(r.body, "duo_ready 1") {
		t.Errorf("admin token on /metrics: %d", r.status)
	}
}

func TestPagesShowState(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	for _, secret := range []string{testPassword, testToken} {
		c := f.login(secret)
		for p, wants := range pageWants {
			r := f.do(c, http.MethodGet, p, nil)
			if r.status != http.StatusOK {
				t.Fatalf("GET %s: %d", p, r.status)
			}
			for _, w := range append(wants, "NOT CONFIDENTIAL", `<main id="main"`, "<h1>") {
				if !strings.Contains(r.body, w) {
					t.Errorf("%s lacks %q", p, w)
				}
			}
			if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || r.header.Get("X-Frame-Options") != "DENY" {
				t.Errorf("%s security headers: %v", p, r.header)
			}
		}
	}
}

func TestSessionCookie(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	c := f.client()
	r := f.do(c, http.MethodGet, "/login", nil)
	r = f.do(c, http.MethodPost, "/login", url.Values{"csrf": {csrf(t, r.body)}, "password": {testPassword}, "next": {"//evil.example/"}})
	if r.header.Get("Location") != "/admin/" {
		t.Errorf("open redirect after sign-in: %q", r.header.Get("Location"))
	}
	var cookie string
	for _, v := range r.header.Values("Set-Cookie") {
		if strings.HasPrefix(v, sessionCookie+"=") {
			cookie = strings.ToLower(v)
		}
	}
	if !strings.Contains(cookie, "httponly") || !strings.Contains(cookie, "samesite=strict") {
		t.Errorf("session cookie %q", cookie)
	}
	f.clock.Advance(31 * time.Minute)
	if r := f.do(c, http.MethodGet, "/admin/", nil); r.status != http.StatusSeeOther {
		t.Errorf("an idle session is still valid: %d", r.status)
	}
}

func TestCSRF(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	c := f.login(testPassword)
	before := f.store.Signing().ID
	for _, tok := range []string{"", "forged"} {
		if r := f.do(c, http.MethodPost, "/admin/keys/rotate", url.Values{"csrf": {tok}}); r.status != http.StatusForbidden {
			t.Errorf("rotate with csrf %q: %d", tok, r.status)
		}
	}
	if f.store.Signing().ID != before {
		t.Fatal("a forged form rotated the keys")
	}
	// Login forms need their own CSRF value (no login CSRF).
	other := f.client()
	if r := f.do(other, http.MethodPost, "/login", url.Values{"password": {testPassword}}); r.status != http.StatusForbidden {
		t.Errorf("sign-in without the form's token: %d", r.status)
	}
	page := f.do(c, http.MethodGet, "/admin/keys", nil)
	r := f.do(c, http.MethodPost, "/admin/keys/rotate", url.Values{"csrf": {csrf(t, page.body)}})
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.header.Get("Location"), "/admin/keys?rotated=") {
		t.Fatalf("rotate: %d %s", r.status, r.header.Get("Location"))
	}
	after := f.store.Signing().ID
	if after == before || f.store.Validation()[1].ID != before {
		t.Fatalf("keys not rotated: %s → %s", before, after)
	}
	page = f.do(c, http.MethodGet, r.header.Get("Location"), nil)
	if !strings.Contains(page.body, "Rotated. The new signing key is <code>"+after) {
		t.Error("the keys page does not confirm the rotation")
	}
	if r := f.do(c, http.MethodPost, "/logout", url.Values{"csrf": {"forged"}}); r.status != http.StatusForbidden {
		t.Errorf("logout with a forged token: %d", r.status)
	}
	if r := f.do(c, http.MethodPost, "/logout", url.Values{"csrf": {csrf(t, page.body)}}); r.status != http.StatusSeeOther {
		t.Errorf("logout: %d", r.status)
	}
	if r := f.do(c, http.MethodGet, "/admin/", nil); r.status != http.StatusSeeOther {
		t.Errorf("still signed in after logout: %d", r.status)
	}
}

func TestNetworkRestriction(t *testing.T) {
	tests := []struct {
		name string
		nets []string
		want int
	}{
		{"loopback allowed", []string{"127.0.0.0/8"}, http.StatusSeeOther},
		{"single address allowed", []string{"10.0.0.0/8", "127.0.0.1/32"}, http.StatusSeeOther},
		{"other network only", []string{"10.0.0.0/8"}, http.StatusForbidden},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var nets []netip.Prefix
			for _, n := range tc.nets {
				nets = append(nets, netip.MustParsePrefix(n))
			}
			f := newFixture(t, fixtureOptions{networks: nets, metricsOff: true})
			c := f.client()
			if r := f.do(c, http.MethodGet, "/admin/", nil); r.status != tc.want {
				t.Errorf("GET /admin/: %d, want %d", r.status, tc.want)
			}
			wantMetrics := http.StatusOK
			if tc.want == http.StatusForbidden {
				wantMetrics = http.StatusForbidden
			}
			if r := f.do(c, http.MethodGet, "/metrics", nil); r.status != wantMetrics {
				t.Errorf("GET /metrics with metrics_auth none: %d, want %d", r.status, wantMetrics)
			}
		})
	}
}

func TestLoginRateLimit(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	c := f.client()
	for i := range loginFailsPerAddr + 1 {
		r := f.do(c, http.MethodGet, "/login", nil)
		r = f.do(c, http.MethodPost, "/login", url.Values{"csrf": {csrf(t, r.body)}, "password": {"wrong password " + string(rune('a'+i))}})
		want := http.StatusUnauthorized
		if i == loginFailsPerAddr {
			want = http.StatusTooManyRequests
		}
		if r.status != want {
			t.Fatalf("attempt %d: %d, want %d", i+1, r.status, want)
		}
	}
	// Even the right password waits.
	r := f.do(c, http.MethodGet, "/login", nil)
	r = f.do(c, http.MethodPost, "/login", url.Values{"csrf": {csrf(t, r.body)}, "password": {testPassword}})
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Fatalf("locked out: %d %v", r.status, r.header)
	}
	f.clock.Advance(loginWindow)
	f.login(testPassword)
}

func TestNoPasswordSet(t *testing.T) {
	f := newFixture(t, fixtureOptions{noPassword: true})
	c := f.client()
	r := f.do(c, http.MethodGet, "/login", nil)
	if !strings.Contains(r.body, "admin set-password") {
		t.Error("the login page does not say how to set a password")
	}
	r = f.do(c, http.MethodPost, "/login", url.Values{"csrf": {csrf(t, r.body)}, "password": {testPassword}})
	if r.status != http.StatusUnauthorized {
		t.Errorf("sign-in without a password file: %d", r.status)
	}
	f.login(testToken) // tokens still work
}

func TestNoSecretInAnyPage(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	c := f.login(testPassword)
	key := f.store.Signing().Private
	secrets := []string{testPassword, testToken, key.D.Text(16)[:32], "PRIVATE KEY"}
	paths := []string{"/login", "/api/status", "/metrics", "/static/app.js"}
	for p := range pageWants {
		paths = append(paths, p)
	}
	for _, p := range paths {
		r := f.do(c, http.MethodGet, p, nil)
		for _, s := range secrets {
			if strings.Contains(r.body, s) {
				t.Errorf("%s shows a secret (%.12s…)", p, s)
			}
		}
	}
}

func TestPasswordFile(t *testing.T) {
	p := t.TempDir() + "/sub/pw"
	if err := WritePasswordFile(p, []byte("short"), 4); err == nil {
		t.Error("a short password was accepted")
	}
	if err := WritePasswordFile(p, []byte(testPassword), 4); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		pw   string
		want bool
	}{{testPassword, true}, {testPassword + "x", false}, {"", false}} {
		if ok, err := checkPassword(p, []byte(tc.pw)); ok != tc.want || err != nil {
			t.Errorf("checkPassword(%q) = %v, %v", tc.pw, ok, err)
		}
	}
}

// TestAgentPlatformComponent: a configured Agent Platform is one overview
// line with its sessions, and its reason when it cannot serve.
func TestAgentPlatformComponent(t *testing.T) {
	for _, c := range []struct {
		ready  bool
		reason string
		want   string
	}{
		{true, "", "serving Agentic Chat; 3 sessions running"},
		{false, "waiting for GitLab keys", "waiting for GitLab keys"},
	} {
		st := buildStatus(Sources{
			AgentPlatformReady:    func() (bool, string) { return c.ready, c.reason },
			AgentPlatformSessions: func() int { return 3 },
		}, time.Now(), nil)
		var got *Component
		for i := range st.Components {
			if st.Components[i].Name == "agent_platform" {
				got = &st.Components[i]
			}
		}
		if got == nil || got.Ready != c.ready || got.Detail != c.want || st.AgentPlatform.Sessions != 3 {
			t.Fatalf("component %+v, status %+v", got, st.AgentPlatform)
		}
	}
	if st := buildStatus(Sources{}, time.Now(), nil); st.AgentPlatform != nil {
		t.Fatal("an unconfigured Agent Platform shows up")
	}
}
