package secret

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/duo-confidential/duo-confidential/proxy/attest"
)

func TestClientHeadersExact(t *testing.T) {
	type seen struct {
		path   string
		header http.Header
		body   string
	}
	got := make(chan seen, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.URL.Path, r.Header.Clone(), string(b)}
		if r.URL.Path == AttestPath {
			_, _ = io.WriteString(w, `{"AttestationDoc":"e30="}`)
			return
		}
		http.Error(w, "no", http.StatusTeapot)
	}))
	defer srv.Close()

	// A caller's client with a cookie jar holding a cookie for the API: the
	// jar must not be used.
	hc := srv.Client()
	hc.Jar, _ = cookiejar.New(nil)
	u, _ := url.Parse(srv.URL)
	hc.Jar.SetCookies(u, []*http.Cookie{{Name: "track", Value: "me"}})
	c, err := NewClient(srv.URL+"/", testAPIKey, testVersion, hc)
	if err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, 32)
	doc, err := c.Attest(context.Background(), nonce)
	if err != nil || string(doc) != "{}" {
		t.Fatalf("Attest = %q, %v", doc, err)
	}
	_, _ = c.ExchangeSecret(context.Background(), []byte{1, 2, 3})

	want := map[string]string{
		"Authorization":       "Bearer " + testAPIKey,
		"Privatemode-Version": testVersion,
		"Privatemode-Client":  "Proxy",
		"Content-Type":        "application/json",
	}
	// Framing net/http adds itself; everything else would be ours.
	transport := []string{"Content-Length", "Accept-Encoding"}
	for i, wantPath := range []string{AttestPath, SecretPath} {
		s := <-got
		if s.path != wantPath {
			t.Errorf("request %d path %s, want %s", i, s.path, wantPath)
		}
		for name, vals := range s.header {
			if slices.Contains(transport, name) {
				continue
			}
			if w, ok := want[name]; !ok || len(vals) != 1 || vals[0] != w {
				t.Errorf("%s: unexpected header %s: %q", wantPath, name, vals)
			}
		}
		for name := range want {
			if s.header.Get(name) == "" {
				t.Errorf("%s: header %s missing", wantPath, name)
			}
		}
		wantBody := `{"Nonce":"` + base64.StdEncoding.EncodeToString(nonce) + `"}`
		if i == 1 {
			wantBody = `{"PublicKey":"AQID"}`
		}
		if s.body != wantBody {
			t.Errorf("%s: body %s, want %s", wantPath, s.body, wantBody)
		}
	}
	if hc.CheckRedirect != nil {
		t.Error("the caller's client was modified")
	}
}

func TestClientStatusErrors(t *testing.T) {
	tests := []struct {
		code         int
		unauthorized bool
		retryable    bool
	}{
		{401, true, false},
		{403, true, false},
		{400, false, false},
		{404, false, false},
		{429, false, true},
		{500, false, true},
		{502, false, true},
		{503, false, true},
		{307, false, false}, // redirects are not followed
	}
	for _, tc := range tests {
		t.Run(http.StatusText(tc.code), func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Retry-After", "7")
				w.Header().Set("Location", "https://elsewhere.invalid/steal")
				w.WriteHeader(tc.code)
				// A gateway echoing our credentials must not put them in
				// our errors.
				_, _ = io.WriteString(w, "denied for "+r.Header.Get("Authorization")+"\x00\x1b[31m")
			}))
			defer srv.Close()
			c, _ := NewClient(srv.URL, testAPIKey, testVersion, srv.Client())
			_, err := c.Attest(context.Background(), make([]byte, 32))
			se, ok := errors.AsType[*StatusError](err)
			if !ok || se.StatusCode != tc.code {
				t.Fatalf("err = %v", err)
			}
			if errors.Is(err, ErrUnauthorized) != tc.unauthorized {
				t.Errorf("unauthorized = %v for %v", !tc.unauthorized, err)
			}
			if tc.unauthorized && !strings.Contains(err.Error(), "check the API key") {
				t.Errorf("message does not point at the API key: %v", err)
			}
			if IsRetryable(err) != tc.retryable {
				t.Errorf("retryable = %v for %v", !tc.retryable, err)
			}
			if strings.Contains(err.Error(), testAPIKey) || strings.ContainsAny(err.Error(), "\x00\x1b") {
				t.Errorf("error leaks the key or control bytes: %q", err)
			}
			if se.RetryAfter.Seconds() != 7 {
				t.Errorf("RetryAfter = %s", se.RetryAfter)
			}
		})
	}
}

func TestClientResponseProblems(t *testing.T) {
	var body string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, body)
	}))
	defer srv.Close()
	c, _ := NewClient(srv.URL, testAPIKey, testVersion, srv.Client())
	ctx := context.Background()

	body = `{"EncapsulatedKey":"` + strings.Repeat("A", maxExchangeResponse) + `"}`
	if _, err := c.ExchangeSecret(ctx, nil); !errors.Is(err, ErrResponseTooLarge) {
		t.Errorf("oversized exchange response: %v", err)
	}
	body = "{" + strings.Repeat(" ", maxAttestResponse) + "}"
	if _, err := c.Attest(ctx, nil); !errors.Is(err, ErrResponseTooLarge) {
		t.Errorf("oversized attest response: %v", err)
	}
	for _, bad := range []string{`not json`, `{"AttestationDoc":"!!"}`, `{"AttestationDoc":""}`, `{"AttestationDoc":"e30="} {}`, `[]`} {
		body = bad
		if _, err := c.Attest(ctx, nil); !errors.Is(err, attest.ErrMalformed) || IsRetryable(err) {
			t.Errorf("attest body %q: %v", bad, err)
		}
	}
	for _, bad := range []string{`not json`, `{}`, `{"EncapsulatedKey":"AQID","Signature":"AQ==","MeshCert":"AQ=="}`} {
		body = bad
		if _, err := c.ExchangeSecret(ctx, nil); !errors.Is(err, ErrMalformedResponse) || IsRetryable(err) {
			t.Errorf("exchange body %q: %v", bad, err)
		}
	}
}

func TestClientContextAndTransport(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The server notices the client hanging up only once the body
		// is consumed; release bounds the wait should it never notice,
		// since srv.Close waits for active handlers.
		_, _ = io.ReadAll(r.Body)
		close(entered)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	c, _ := NewClient(srv.URL, testAPIKey, testVersion, srv.Client())
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-entered; cancel() }()
	_, err := c.Attest(ctx, make([]byte, 32))
	if !errors.Is(err, context.Canceled) || IsRetryable(err) {
		t.Fatalf("cancelled: %v", err)
	}
	close(release)
	srv.Close()

	// Nothing listens any more: a transport error, retryable.
	_, err = c.ExchangeSecret(context.Background(), nil)
	if err == nil || !IsRetryable(err) || strings.Contains(err.Error(), testAPIKey) {
		t.Fatalf("transport error: %v", err)
	}
}

func TestNewClient(t *testing.T) {
	c, err := NewClient("api.privatemode.ai:443", testAPIKey, testVersion, nil)
	if err != nil || c.base.String() != "https://api.privatemode.ai:443" {
		t.Fatalf("bare endpoint: %v %v", c, err)
	}
	for _, bad := range [][3]string{
		{"ftp://x", testAPIKey, testVersion},
		{"https://u:p@x", testAPIKey, testVersion},
		{"https://x", "", testVersion},
		{"https://x", "a\nb", testVersion},
		{"https://x", testAPIKey, ""},
	} {
		if _, err := NewClient(bad[0], bad[1], bad[2], nil); err == nil {
			t.Errorf("NewClient%q accepted", bad)
		} else if bad[1] != "" && strings.Contains(err.Error(), bad[1]) {
			t.Errorf("error leaks key: %v", err)
		}
	}
}
