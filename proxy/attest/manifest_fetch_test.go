package attest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHTTPManifest(t *testing.T) {
	body := []byte(`{"Policies":{}}`)
	mux := http.NewServeMux()
	mux.HandleFunc("/ok/manifest.json", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("t") == "" {
			http.Error(w, "no cache buster", http.StatusBadRequest)
			return
		}
		_, _ = w.Write(body)
	})
	mux.HandleFunc("/big/manifest.json", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(make([]byte, MaxManifestSize+1))
	})
	// The other host serves the manifest too, so following a redirect
	// there would succeed: only the redirect check refuses it.
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(body) }))
	defer other.Close()
	mux.HandleFunc("/to-http/manifest.json", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/manifest.json", http.StatusFound)
	})
	mux.HandleFunc("/same/manifest.json", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ok/manifest.json?t=1", http.StatusFound)
	})
	srv := httptest.NewTLSServer(mux) // binds 127.0.0.1
	defer srv.Close()
	tests := []struct {
		name, url string
		wantErr   string
	}{
		{"ok", srv.URL + "/ok/manifest.json", ""},
		{"not found", srv.URL + "/missing.json", "HTTP 404"},
		{"too large", srv.URL + "/big/manifest.json", "larger than"},
		{"redirect on the same host", srv.URL + "/same/manifest.json", ""},
		{"redirect to http on another port refused", srv.URL + "/to-http/manifest.json", "redirect to http://"},
		{"plain http refused", strings.Replace(srv.URL, "https://", "http://", 1) + "/ok/manifest.json", "https"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := (&HTTPManifest{URL: tc.url, Client: srv.Client()}).FetchManifest(context.Background())
			if tc.wantErr == "" {
				if err != nil || string(got) != string(body) {
					t.Fatalf("FetchManifest = %q, %v", got, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
			}
		})
	}
	// Without the test server's CA the fetch fails: TLS is verified.
	if _, err := (&HTTPManifest{URL: srv.URL + "/ok/manifest.json"}).FetchManifest(context.Background()); err == nil {
		t.Fatal("fetch from an untrusted server succeeded")
	}
}
