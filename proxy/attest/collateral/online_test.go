package collateral

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/internal/testutil"
	"github.com/duo-confidential/duo-confidential/proxy/attest"
)

// vendorServer is a loopback HTTPS server that answers for the Intel and AMD
// host names with a certificate from its own CA, which clients only trust
// through the CA-bundle option.
type vendorServer struct {
	srv    *httptest.Server
	caFile string
	hits   sync.Map // path -> *atomic.Int32
}

func newVendorServer(t *testing.T, h func(vs *vendorServer, w http.ResponseWriter, r *http.Request)) *vendorServer {
	t.Helper()
	ca := testutil.NewCA(t, "collateral test CA", 24*time.Hour)
	der, key := ca.Leaf(t, []string{IntelPCSHost, IntelCertsHost, AMDKDSHost}, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	vs := &vendorServer{caFile: filepath.Join(t.TempDir(), "ca.pem")}
	if err := os.WriteFile(vs.caFile, ca.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	vs.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := vs.hits.LoadOrStore(r.URL.Path, new(atomic.Int32))
		n.(*atomic.Int32).Add(1)
		h(vs, w, r)
	}))
	vs.srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	vs.srv.StartTLS()
	t.Cleanup(vs.srv.Close)
	return vs
}

func (vs *vendorServer) count(path string) int {
	n, ok := vs.hits.Load(path)
	if !ok {
		return 0
	}
	return int(n.(*atomic.Int32).Load())
}

// online builds a fetcher whose every dial goes to the loopback server. The
// proxy is switched off here so that a developer's HTTPS_PROXY cannot
// interfere; TestOnlineHonoursHTTPSProxy covers the proxy path.
func (vs *vendorServer) online(t *testing.T, opts OnlineOptions) (*Online, *[]time.Duration) {
	t.Helper()
	if opts.CABundle == "" {
		opts.CABundle = vs.caFile
	}
	o, err := NewOnline(opts)
	if err != nil {
		t.Fatal(err)
	}
	addr := vs.srv.Listener.Addr().String()
	o.transport.Proxy = nil
	o.transport.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	var mu sync.Mutex
	slept := &[]time.Duration{}
	o.sleep = func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		*slept = append(*slept, d)
		mu.Unlock()
		return ctx.Err()
	}
	return o, slept
}

func serveTCB(_ *vendorServer, w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Tcb-Info-Issuer-Chain", testIssuer)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Set-Cookie", "session=1")
	w.Header().Set("Request-Id", "abc")
	_, _ = io.WriteString(w, `{"tcbInfo":{}}`)
}

func TestOnlineFetch(t *testing.T) {
	vs := newVendorServer(t, serveTCB)
	o, _ := vs.online(t, OnlineOptions{})
	before := time.Now().Add(-time.Second)
	it, err := o.Collateral(context.Background(), tcbURL)
	if err != nil {
		t.Fatal(err)
	}
	if string(it.Body) != `{"tcbInfo":{}}` || it.Source != SourceOnline || it.URL != tcbURL || it.FetchedAt.Before(before) {
		t.Errorf("item = %+v", it)
	}
	want := map[string]bool{"Tcb-Info-Issuer-Chain": true, "Content-Type": true}
	if len(it.Header) != len(want) || it.Header.Get("Tcb-Info-Issuer-Chain") != testIssuer {
		t.Errorf("kept headers %v, want only %v", it.Header, want)
	}
}

func TestOnlineNeedsCABundle(t *testing.T) {
	vs := newVendorServer(t, serveTCB)
	// The system pool does not know the test CA: without the bundle the
	// same fetch must fail certificate verification.
	o, err := NewOnline(OnlineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	addr := vs.srv.Listener.Addr().String()
	o.transport.Proxy = nil
	o.transport.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	_, err = o.Collateral(context.Background(), tcbURL)
	var uae x509.UnknownAuthorityError
	if err == nil || !errors.As(err, &uae) {
		t.Fatalf("err = %v, want unknown authority", err)
	}

	empty := filepath.Join(t.TempDir(), "empty.pem")
	_ = os.WriteFile(empty, []byte("not a certificate\n"), 0o644)
	if _, err := NewOnline(OnlineOptions{CABundle: empty}); err == nil || !strings.Contains(err.Error(), "no PEM certificates") {
		t.Errorf("empty CA bundle: err = %v", err)
	}
	if _, err := NewOnline(OnlineOptions{CABundle: filepath.Join(t.TempDir(), "missing.pem")}); err == nil {
		t.Error("missing CA bundle accepted")
	}
}

func TestOnlineTransportDefaults(t *testing.T) {
	o, err := NewOnline(OnlineOptions{Timeout: 7 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if reflect.ValueOf(o.transport.Proxy).Pointer() != reflect.ValueOf(http.ProxyFromEnvironment).Pointer() {
		t.Error("transport does not use http.ProxyFromEnvironment")
	}
	if o.transport.TLSClientConfig.MinVersion != tls.VersionTLS12 {
		t.Error("TLS minimum is not 1.2")
	}
	if o.client.Timeout != 7*time.Second {
		t.Errorf("client timeout %v", o.client.Timeout)
	}
}

func TestOnlineHTTPErrors(t *testing.T) {
	vs := newVendorServer(t, func(vs *vendorServer, w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/vcek/v1/Milan/crl": // 503 once, then fine
			if vs.count(r.URL.Path) == 1 {
				w.Header().Set("Retry-After", "7")
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			_, _ = io.WriteString(w, "crl")
		case "/vcek/v1/Milan/cert_chain": // always rate limited, asking for an hour
			w.Header().Set("Retry-After", "3600")
			w.WriteHeader(http.StatusTooManyRequests)
		case "/vcek/v1/Genoa/cert_chain": // always failing, no Retry-After
			w.WriteHeader(http.StatusBadGateway)
		case "/IntelSGXRootCA.der": // larger than the limit, with Content-Length
			_, _ = w.Write(make([]byte, 2048))
		case "/vcek/v1/Genoa/crl": // larger than the limit, streamed
			w.(http.Flusher).Flush()
			_, _ = w.Write(make([]byte, 2048))
		case "/redirect":
			http.Redirect(w, r, "https://example.com/collateral", http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	})
	o, slept := vs.online(t, OnlineOptions{MaxBodySize: 1024, Retries: 2, MaxRetryAfter: 10 * time.Second})
	ctx := context.Background()

	it, err := o.Collateral(ctx, amdCRLURL)
	if err != nil || string(it.Body) != "crl" {
		t.Fatalf("503 then 200: %v", err)
	}
	if vs.count("/vcek/v1/Milan/crl") != 2 || !reflect.DeepEqual(*slept, []time.Duration{7 * time.Second}) {
		t.Errorf("hits %d, waits %v; want 2 hits and one 7s wait", vs.count("/vcek/v1/Milan/crl"), *slept)
	}

	*slept = nil
	_, err = o.Collateral(ctx, chainURL)
	if err == nil || !strings.Contains(err.Error(), "429") || !strings.Contains(err.Error(), chainURL) {
		t.Errorf("429: err = %v", err)
	}
	if vs.count("/vcek/v1/Milan/cert_chain") != 3 || !reflect.DeepEqual(*slept, []time.Duration{10 * time.Second, 10 * time.Second}) {
		t.Errorf("429: hits %d waits %v; want 3 hits, Retry-After capped at 10s", vs.count("/vcek/v1/Milan/cert_chain"), *slept)
	}

	*slept = nil
	if _, err := o.Collateral(ctx, "https://kdsintf.amd.com/vcek/v1/Genoa/cert_chain"); err == nil {
		t.Error("502: no error")
	}
	if !reflect.DeepEqual(*slept, []time.Duration{time.Second, 2 * time.Second}) {
		t.Errorf("backoff waits %v, want 1s 2s", *slept)
	}

	_, err = o.Collateral(ctx, pckCRLURL)
	if err == nil || !strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), pckCRLURL) {
		t.Errorf("404: err = %v, want status and URL", err)
	}
	if errors.Is(err, attest.ErrCollateralNotFound) || attest.ClassOf(err) != attest.ClassCollateral {
		t.Errorf("404 must be a collateral-class fetch error, not 'not found': %v", err)
	}
	if vs.count("/sgx/certification/v4/pckcrl") != 1 {
		t.Error("404 was retried")
	}

	for _, u := range []string{IntelRootCACRLURL, "https://kdsintf.amd.com/vcek/v1/Genoa/crl"} {
		if _, err := o.Collateral(ctx, u); err == nil || !strings.Contains(err.Error(), "limit") {
			t.Errorf("oversized %s: err = %v", u, err)
		}
	}
	if _, err := o.Collateral(ctx, "https://kdsintf.amd.com/redirect"); err == nil || !strings.Contains(err.Error(), "example.com") {
		t.Errorf("redirect off the allowlist: err = %v", err)
	}
}

func TestOnlineRefusesOtherHosts(t *testing.T) {
	vs := newVendorServer(t, serveTCB)
	o, _ := vs.online(t, OnlineOptions{})
	var dials atomic.Int32
	inner := o.transport.DialContext
	o.transport.DialContext = func(ctx context.Context, n, a string) (net.Conn, error) {
		dials.Add(1)
		return inner(ctx, n, a)
	}
	for _, u := range []string{
		"https://example.com/tdx/certification/v4/tcb?fmspc=00",
		"http://api.trustedservices.intel.com/tdx/certification/v4/qe/identity",
		"https://api.trustedservices.intel.com:8443/tdx/certification/v4/qe/identity",
		"https://api.trustedservices.intel.com.evil.example/x",
		"not a url",
	} {
		if _, err := o.Collateral(context.Background(), u); err == nil {
			t.Errorf("%s: fetched", u)
		}
	}
	if dials.Load() != 0 {
		t.Errorf("%d connections made for refused URLs", dials.Load())
	}
}

func TestOnlineContextCancel(t *testing.T) {
	vs := newVendorServer(t, func(_ *vendorServer, w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	o, _ := vs.online(t, OnlineOptions{Retries: 5})
	o.sleep = sleepCtx // really wait, so the cancel lands during backoff
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err := o.Collateral(ctx, qeURL)
	if !errors.Is(err, context.Canceled) || time.Since(start) > 900*time.Millisecond {
		t.Fatalf("err = %v after %v, want prompt context.Canceled", err, time.Since(start))
	}
}

// TestOnlineHonoursHTTPSProxy runs a loopback CONNECT proxy and re-runs this
// test binary with HTTPS_PROXY pointing at it: net/http reads the proxy
// environment once per process, so a fresh process is the honest test.
func TestOnlineHonoursHTTPSProxy(t *testing.T) {
	if os.Getenv("COLLATERAL_PROXY_CHILD") != "" {
		t.Skip("child process")
	}
	vs := newVendorServer(t, serveTCB)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var connects sync.Map
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go proxyConn(c, vs.srv.Listener.Addr().String(), &connects)
		}
	}()
	cmd := exec.Command(os.Args[0], "-test.run=^TestOnlineProxyChild$", "-test.v")
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !strings.HasSuffix(strings.ToUpper(k), "_PROXY") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "HTTPS_PROXY=http://"+ln.Addr().String(),
		"COLLATERAL_PROXY_CHILD=1", "COLLATERAL_PROXY_CHILD_CA="+vs.caFile)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestOnlineProxyChild") {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if _, ok := connects.Load(IntelPCSHost + ":443"); !ok {
		t.Error("the fetch did not go through the proxy")
	}
}

func TestOnlineProxyChild(t *testing.T) {
	if os.Getenv("COLLATERAL_PROXY_CHILD") == "" {
		t.Skip("run by TestOnlineHonoursHTTPSProxy")
	}
	o, err := NewOnline(OnlineOptions{CABundle: os.Getenv("COLLATERAL_PROXY_CHILD_CA"), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	it, err := o.Collateral(context.Background(), tcbURL)
	if err != nil || string(it.Body) != `{"tcbInfo":{}}` {
		t.Fatalf("fetch through proxy: %v", err)
	}
}

// proxyConn serves one CONNECT request by tunnelling to target.
func proxyConn(c net.Conn, target string, connects *sync.Map) {
	defer c.Close()
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil || req.Method != http.MethodConnect {
		_, _ = io.WriteString(c, "HTTP/1.1 405 Method Not Allowed\r\n\r\n")
		return
	}
	connects.Store(req.Host, true)
	up, err := net.Dial("tcp", target)
	if err != nil {
		_, _ = io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\n\r\n")
		return
	}
	defer up.Close()
	_, _ = io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, br); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
}
