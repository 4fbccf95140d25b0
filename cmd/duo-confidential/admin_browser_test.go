package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/duo-confidential/duo-confidential/proxy/sandbox"
)

// chromiumPath finds Debian's Chromium; the browser tests skip only when
// it is not installed (.ci/run installs it).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	t.Skip("chromium is not installed (apt-get install -y chromium); skipping the admin UI browser tests")
	return ""
}

// artifactsDir is where screenshots go: $DUO_ARTIFACTS, else a temp dir.
func artifactsDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("DUO_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// demoProc is `duo-confidential demo` running, with what it printed.
type demoProc struct {
	admin, proxy, gateway, headers, password string
	out                                      string       // what it printed
	client                                   *http.Client // trusts the demo's local CA
	spki                                     string       // base64 SHA-256 of the admin leaf's public key
}

var (
	reAdmin    = regexp.MustCompile(`(https://localhost:\d+)/admin/`)
	rePassword = regexp.MustCompile(`DEMO admin password \(printed once[^)]*\): (\S+)`)
	reProxy    = regexp.MustCompile(`The proxy listens on (https://[^\s:]+:\d+) `)
	reGateway  = regexp.MustCompile(`The GitLab AI Gateway listens on (https://[^\s:]+:\d+)`)
	reHeaders  = regexp.MustCompile(`\n(\S+gitlab-headers\.txt) holds a token`)
	reCA       = regexp.MustCompile(`clients must trust, is\n\s+(\S+)`)
)

func startDemo(t *testing.T) *demoProc {
	t.Helper()
	p := startProc(t, nil, "demo", "--listen", "127.0.0.1:0", "--gateway-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--agent-platform-listen", "127.0.0.1:0")
	p.waitUntil(t, "the demo to print its admin URL", func() bool { return strings.Contains(p.stdout.String(), "Press Ctrl-C") })
	out := p.stdout.String()
	find := func(re *regexp.Regexp) string {
		m := re.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("the demo did not print %s:\n%s", re, out)
		}
		return m[1]
	}
	d := &demoProc{admin: find(reAdmin), password: find(rePassword), proxy: find(reProxy), gateway: find(reGateway), headers: find(reHeaders), out: out}
	d.client = localCAClient(t, filepath.Dir(filepath.Dir(find(reCA))))
	// Chromium gets no trust store of ours: it is told to accept exactly
	// the admin listener's certificate, which Go verified against the CA.
	resp, err := d.client.Get(d.admin + "/monitoring/none")
	if err != nil {
		t.Fatalf("the admin listener's certificate does not verify against the demo CA: %v", err)
	}
	resp.Body.Close()
	sum := sha256.Sum256(resp.TLS.PeerCertificates[0].RawSubjectPublicKeyInfo)
	d.spki = base64.StdEncoding.EncodeToString(sum[:])
	return d
}

// gitlabRequest sends the demo's code completion with Rails' headers.
func (d *demoProc) gitlabRequest(t *testing.T) {
	t.Helper()
	f, err := os.Open(d.headers)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := http.Header{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ": "); ok {
			h.Set(k, v)
		}
	}
	c := demoCalls()[0]
	req, _ := http.NewRequest(http.MethodPost, d.gateway+c.path, strings.NewReader(c.body))
	req.Header = h
	resp, err := d.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("code completion through the demo gateway: HTTP %d", resp.StatusCode)
	}
	body := fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"hi"}],"max_tokens":4}`, sandbox.ModelChat)
	resp, err = d.client.Post(d.proxy+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// browser starts headless Chromium; page errors (exceptions, CSP
// violations reported as exceptions) are collected.
func browser(t *testing.T, spki string) (context.Context, func() []string) {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.Flag("ignore-certificate-errors-spki-list", spki),
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox, // CI runs as root
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { cancelT(); cancelC(); cancelA() })
	var mu sync.Mutex
	var errs []string
	if err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*runtime.EventExceptionThrown); ok {
			mu.Lock()
			errs = append(errs, fmt.Sprintf("%s at %s:%d", e.ExceptionDetails.Text, e.ExceptionDetails.URL, e.ExceptionDetails.LineNumber))
			mu.Unlock()
		}
	}); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx, func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), errs...) }
}

func shot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "admin-"+name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// adminPages are the demo's admin pages and text each must show. All of
// it is rendered by the server, so the pages show it without JavaScript
// too (the copy buttons, which need app.js, are checked separately).
var adminPages = []struct {
	name, path string
	want       []string
}{
	{"overview", "/admin/", []string{"ready", "Attestation", "tdx evidence accepted", "GitLab's signing keys", "NOT CONFIDENTIAL"}},
	{"attestation", "/admin/attestation", []string{"MRTD", "Measurements against policy", "TCB status", "hash chain verified", "Trust log"}},
	{"gitlab", "/admin/gitlab", []string{"Local AI Gateway URL", "custom_openai/" + sandbox.ModelCode, "custom_openai/" + sandbox.ModelChat, "Indirect connections", "answered in"}},
	{"keys", "/admin/keys", []string{"Rotate signing key", "signing", "3072 bits", "GitLab's signing keys"}},
	{"tls", "/admin/tls", []string{"local-ca", "Local CA to trust", "localhost", "duo-confidential local CA"}},
	{"traffic", "/admin/traffic", []string{"GitLab AI gateway", "Attesting proxy"}},
}

// TestAdminUIInBrowser drives the real demo's admin UI with Chromium:
// sign-in required, every page shows the running appliance's data with
// text at WCAG AA contrast, the pages work with scripts disabled, the key
// rotation works, and the traffic view updates without a reload.
func TestAdminUIInBrowser(t *testing.T) {
	chromiumPath(t)
	dir := artifactsDir(t)
	d := startDemo(t)
	ctx, pageErrors := browser(t, d.spki)

	// Signing in is required, and brings the admin back where they were.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(d.admin+"/admin/attestation"),
		chromedp.WaitVisible(chromedp.ID("password")),
	); err != nil {
		t.Fatal(err)
	}
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(loc, "/login?next=%2Fadmin%2Fattestation") {
		t.Fatalf("an unauthenticated page went to %s, not the sign-in", loc)
	}
	shot(t, ctx, dir, "login")
	lowContrast(t, ctx, "login")
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("password"), "wrong password!!"),
		chromedp.Submit(chromedp.ID("password")),
		chromedp.WaitVisible(chromedp.ID("login-error")),
	); err != nil {
		t.Fatalf("wrong password: %v", err)
	}
	lowContrast(t, ctx, "login (wrong password)")
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("password"), d.password),
		chromedp.Submit(chromedp.ID("password")),
		chromedp.WaitVisible(chromedp.Search(`//h1[text()="Attestation"]`)),
	); err != nil {
		t.Fatalf("sign in: %v", err)
	}

	for _, p := range adminPages {
		if err := chromedp.Do(ctx, chromedp.Navigate(d.admin+p.path), chromedp.WaitVisible(chromedp.CSS("main h1"))); err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
		text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
		if err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
		for _, w := range p.want {
			if !strings.Contains(text, w) {
				t.Errorf("%s page lacks %q:\n%s", p.name, w, text)
			}
		}
		if p.name == "gitlab" {
			n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("button.copy:not([hidden])").length`))
			if err != nil || n == 0 {
				t.Errorf("no copy buttons shown (%d, %v)", n, err)
			}
		}
		lowContrast(t, ctx, p.name)
		shot(t, ctx, dir, p.name)
	}
	t.Run("without JavaScript", func(t *testing.T) { adminWithoutJS(t, ctx, d, dir) })

	// The rotate button really rotates (through the CSRF-protected form).
	kid := chromedp.Text(chromedp.CSS("tbody tr:first-child th code"))
	if err := chromedp.Do(ctx, chromedp.Navigate(d.admin+"/admin/keys")); err != nil {
		t.Fatal(err)
	}
	before, err := chromedp.Run(ctx, kid)
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("button.danger")), chromedp.WaitVisible(chromedp.CSS("p.callout.ok"))); err != nil {
		t.Fatalf("rotate: %v", err)
	}
	lowContrast(t, ctx, "keys (rotated)")
	after, err := chromedp.Run(ctx, kid)
	if err != nil {
		t.Fatal(err)
	}
	if before == "" || before == after {
		t.Errorf("rotation did not change the signing key: %q → %q", before, after)
	}

	// The traffic view updates live: requests made now appear without a
	// reload (the marker set on the page survives).
	count := func(sel string) int {
		s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`(function(){var e=document.querySelector(`+strconv.Quote(sel)+`);return e?e.textContent:"0"})()`))
		n, _ := strconv.Atoi(strings.TrimSpace(s))
		return n
	}
	gwSel := `#routes-gateway tr[data-route="code_completions"] td[data-k="requests"]`
	pxSel := `#routes-proxy tr[data-route="/v1/chat/completions"] td[data-k="requests"]`
	if err := chromedp.Do(ctx, chromedp.Navigate(d.admin+"/admin/traffic"), chromedp.WaitVisible(chromedp.ID("routes-gateway"))); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.__noReload = true`)); err != nil {
		t.Fatal(err)
	}
	gw0, px0 := count(gwSel), count(pxSel)
	for range 3 {
		d.gitlabRequest(t)
	}
	deadline := time.Now().Add(30 * time.Second)
	for count(gwSel) < gw0+3 || count(pxSel) < px0+3 {
		if time.Now().After(deadline) {
			t.Fatalf("the traffic view did not update: gateway %d → %d, proxy %d → %d", gw0, count(gwSel), px0, count(pxSel))
		}
		time.Sleep(200 * time.Millisecond)
	}
	marker, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.__noReload === true`))
	if err != nil || !marker {
		t.Fatalf("the traffic page reloaded instead of updating live (%v)", err)
	}
	bars, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#hists-gateway figure rect").length`))
	if err != nil {
		t.Fatal(err)
	}
	if bars == 0 {
		t.Error("no latency histogram bars drawn")
	}
	shot(t, ctx, dir, "traffic-live")
	lowContrast(t, ctx, "traffic (live)")

	t.Run("GitLab connect and drift", func(t *testing.T) { adminGitLabConnect(t, ctx, d, d.out, dir) })

	// Signing out ends the session.
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS("form.logout button")),
		chromedp.WaitVisible(chromedp.ID("password")),
		chromedp.Navigate(d.admin+"/admin/"),
		chromedp.WaitVisible(chromedp.ID("password")),
	); err != nil {
		t.Fatalf("sign out: %v", err)
	}
	if errs := pageErrors(); len(errs) > 0 {
		t.Errorf("page errors: %v", errs)
	}
	t.Logf("screenshots in %s", dir)
}

// contrastJS lists the visible text of the page whose colour on its
// effective background (the nearest opaque one, translucent ones blended
// over it) is below WCAG 2.x AA: 4.5:1, or 3:1 for large text (24px, or
// 18.66px bold). Colours it cannot read are listed too, not skipped.
const contrastJS = `(function () {
  function rgba(s) {
    var m = /^rgba?\(([^)]*)\)$/.exec(s);
    if (!m) { return null; }
    var p = m[1].split(/[\s,\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  }
  function over(top, under) {
    var a = top[3];
    return [0, 1, 2].map(function (i) { return top[i] * a + under[i] * (1 - a); }).concat([1]);
  }
  function lum(c) {
    return [0.2126, 0.7152, 0.0722].reduce(function (sum, w, i) {
      var v = c[i] / 255;
      return sum + w * (v <= 0.04045 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4));
    }, 0);
  }
  function background(el) {
    var layers = [];
    for (var e = el; e; e = e.parentElement) {
      var c = rgba(getComputedStyle(e).backgroundColor);
      if (c === null) { return null; }
      if (c[3] > 0) { layers.push(c); if (c[3] >= 1) { break; } }
    }
    var bg = [255, 255, 255, 1]; // the canvas
    for (var i = layers.length - 1; i >= 0; i--) { bg = over(layers[i], bg); }
    return bg;
  }
  var out = [];
  document.body.querySelectorAll("*").forEach(function (el) {
    if (el.closest("svg, script, style")) { return; }
    var own = Array.prototype.some.call(el.childNodes, function (n) { return n.nodeType === 3 && n.data.trim() !== ""; });
    var st = getComputedStyle(el), r = el.getBoundingClientRect();
    if (!own || st.visibility === "hidden" || el.getClientRects().length === 0 || r.right <= 0 || r.bottom <= 0) { return; }
    var name = el.tagName.toLowerCase() + (el.className ? "." + String(el.className).trim().split(/\s+/).join(".") : "") +
      ' "' + el.textContent.trim().replace(/\s+/g, " ").slice(0, 40) + '"';
    var fg = rgba(st.color), bg = background(el);
    if (fg === null || bg === null) { out.push(name + ": unreadable colour " + st.color); return; }
    fg = over(fg, bg);
    var l1 = lum(fg), l2 = lum(bg), ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
    var size = parseFloat(st.fontSize), bold = parseInt(st.fontWeight, 10) >= 700;
    var need = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
    if (ratio < need) {
      out.push(name + ": " + st.color + " on rgb(" + bg.slice(0, 3).map(Math.round).join(", ") + ") is " + ratio.toFixed(2) + ":1, want " + need + ":1");
    }
  });
  return out;
})()`

// lowContrast fails the test for every piece of text of the current page
// that contrastJS finds below AA.
func lowContrast(t *testing.T, ctx context.Context, page string) {
	t.Helper()
	bad, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](contrastJS))
	if err != nil {
		t.Fatalf("%s: contrast check: %v", page, err)
	}
	for _, b := range bad {
		t.Errorf("%s page: low contrast: %s", page, b)
	}
}

// adminWithoutJS signs in through the real form in a browser context of
// its own with scripts disabled, and checks that every page shows its
// content; what needs app.js (copy buttons, the traffic page's live
// updates) stays hidden and the <noscript> hint shows instead.
func adminWithoutJS(t *testing.T, parent context.Context, d *demoProc, dir string) {
	ctx, cancel := chromedp.NewContext(parent, chromedp.WithNewBrowserContext())
	defer cancel()
	noScript := chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true})
		return err
	})
	if err := chromedp.Do(ctx, noScript,
		chromedp.Navigate(d.admin+"/admin/"),
		chromedp.WaitVisible(chromedp.ID("password")),
		chromedp.SendKeys(chromedp.ID("password"), d.password),
		// A real click on the submit button: the form posts itself.
		chromedp.Click(chromedp.CSS("form.login button")),
		chromedp.WaitVisible(chromedp.Search(`//h1[text()="Overview"]`)),
	); err != nil {
		t.Fatalf("sign in without JavaScript: %v", err)
	}
	// Proof that app.js did not run: it would reveal the copy buttons.
	ran := `document.querySelectorAll("button.copy:not([hidden]), .js-only:not([hidden])").length + document.getElementById("live").textContent.length`
	for _, p := range adminPages {
		if err := chromedp.Do(ctx, chromedp.Navigate(d.admin+p.path), chromedp.WaitVisible(chromedp.CSS("main h1"))); err != nil {
			t.Fatalf("%s without JavaScript: %v", p.name, err)
		}
		text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
		if err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
		for _, w := range p.want {
			if !strings.Contains(text, w) {
				t.Errorf("%s page without JavaScript lacks %q:\n%s", p.name, w, text)
			}
		}
		if n, err := chromedp.Run(ctx, chromedp.Evaluate[int](ran)); err != nil || n != 0 {
			t.Errorf("%s: app.js ran with scripts disabled, or JavaScript-only parts show (%d, %v)", p.name, n, err)
		}
		if p.name == "traffic" && (!strings.Contains(text, "Reload the page to update.") || strings.Contains(text, "updates itself")) {
			t.Errorf("the traffic page without JavaScript shows the wrong hint:\n%s", text)
		}
		lowContrast(t, ctx, p.name+" without JavaScript")
		if p.name == "gitlab" {
			shot(t, ctx, dir, "nojs-gitlab")
		}
	}
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS("form.logout button")),
		chromedp.WaitVisible(chromedp.ID("password")),
	); err != nil {
		t.Fatalf("sign out without JavaScript: %v", err)
	}
}
