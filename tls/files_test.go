package tls

import (
	stdtls "crypto/tls"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/internal/testutil"
)

func TestOperatorFilesRejected(t *testing.T) {
	ca := testutil.NewCA(t, "Site PKI test root", 365*24*time.Hour)
	now := time.Now()
	good, goodKey := ca.LeafPEM(t, []string{"duo.example.internal", "10.0.0.5"}, now.Add(-time.Hour), now.Add(90*24*time.Hour))
	_, otherKey := ca.LeafPEM(t, []string{"duo.example.internal"}, now.Add(-time.Hour), now.Add(time.Hour))
	expired, expiredKey := ca.LeafPEM(t, []string{"duo.example.internal"}, now.Add(-48*time.Hour), now.Add(-time.Hour))
	future, futureKey := ca.LeafPEM(t, []string{"duo.example.internal"}, now.Add(time.Hour), now.Add(48*time.Hour))
	noSAN, noSANKey := ca.LeafPEM(t, nil, now.Add(-time.Hour), now.Add(48*time.Hour))
	cases := []struct {
		name      string
		cert, key []byte
		names     []string
		want      string
	}{
		{"key of another certificate", good, otherKey, nil, "does not belong to the certificate"},
		{"expired", expired, expiredKey, nil, "expired on"},
		{"not yet valid", future, futureKey, nil, "is not valid before"},
		{"name not covered", good, goodKey, []string{"duo.example.internal", "gitlab-duo.example.internal"}, "does not cover gitlab-duo.example.internal"},
		{"IP not covered", good, goodKey, []string{"10.0.0.6"}, "does not cover 10.0.0.6"},
		{"no subject alternative names", noSAN, noSANKey, nil, "no subject alternative names"},
		{"not PEM", []byte("hello"), goodKey, nil, "holds no PEM block"},
		{"key swapped for the certificate", good, good, nil, "tls.files"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			certPath, keyPath := writePair(t, t.TempDir(), c.cert, c.key)
			err := CheckFiles(certPath, keyPath, c.names, now)
			if c.want == "tls.files" {
				// Any clear error will do; it must name the files.
				if err == nil || !strings.Contains(err.Error(), keyPath) {
					t.Fatalf("err = %v, want one naming %s", err, keyPath)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("CheckFiles: err = %v, want %q", err, c.want)
			}
			// Start refuses the same pair with the same message.
			m, err := New(Options{Source: SourceFiles, Names: c.names, StateDir: t.TempDir(), Files: FilesOptions{Cert: certPath, Key: keyPath}})
			if err == nil {
				defer m.Stop()
				err = m.Start(t.Context())
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("New/Start: err = %v, want %q", err, c.want)
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		err := CheckFiles("/nonexistent/tls.crt", "/nonexistent/tls.key", nil, now)
		if err == nil || !strings.Contains(err.Error(), "/nonexistent/tls.crt") {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestOperatorReloadUnderLoad swaps the files and reloads many times while
// clients make requests on fresh connections: no request may fail, and
// the new certificate must be served after each reload. A bad pair in
// between keeps the previous certificate.
func TestOperatorReloadUnderLoad(t *testing.T) {
	ca := testutil.NewCA(t, "Site PKI test root", 365*24*time.Hour)
	dir := t.TempDir()
	now := time.Now()
	names := []string{"localhost", "127.0.0.1"}
	c0, k0 := ca.LeafPEM(t, names, now.Add(-time.Hour), now.Add(60*24*time.Hour))
	certPath, keyPath := writePair(t, dir, c0, k0)
	m, logs := startManager(t, Options{Source: SourceFiles, Names: names, Files: FilesOptions{Cert: certPath, Key: keyPath, PollInterval: -1}})
	port := serveManager(t, m)
	tc := &stdtls.Config{RootCAs: poolOf(t, ca.PEM)}
	url := "https://localhost:" + port + "/"

	var stop atomic.Bool
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5000 && !stop.Load(); i++ {
				if _, err := getVia(tc, url); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				ok.Add(1)
			}
		}()
	}
	for round := range 15 {
		c, k := ca.LeafPEM(t, names, now.Add(-time.Hour), now.Add(60*24*time.Hour))
		writePair(t, dir, c, k)
		if err := m.Reload(t.Context()); err != nil {
			t.Fatalf("round %d: reload: %v", round, err)
		}
		leaf, err := getVia(tc, url)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if got, want := leaf.Raw, firstCertDER(t, c); string(got) != string(want) {
			t.Fatalf("round %d: the reloaded certificate is not served", round)
		}
		// Let the clients make a few dozen handshakes on this pair
		// before the next swap, so swaps land amid traffic.
		for target, deadline := ok.Load()+40, time.Now().Add(time.Minute); ok.Load() < target && failed.Load() == 0; {
			if time.Now().After(deadline) {
				t.Fatal("clients made no progress")
			}
			time.Sleep(time.Millisecond)
		}
	}
	// A key that does not match: Reload fails, the last good pair serves.
	_, wrongKey := ca.LeafPEM(t, names, now.Add(-time.Hour), now.Add(time.Hour))
	before, _ := getVia(tc, url)
	if err := os.WriteFile(keyPath, wrongKey, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := m.Reload(t.Context()); err == nil || !strings.Contains(err.Error(), "does not belong") {
		t.Fatalf("reload of a bad pair: %v", err)
	}
	after, err := getVia(tc, url)
	if err != nil || string(after.Raw) != string(before.Raw) {
		t.Fatalf("after a bad reload: %v (same certificate: %v)", err, err == nil && string(after.Raw) == string(before.Raw))
	}
	if st := m.Status(); !st.Ready || len(st.Warnings) != 1 || !strings.Contains(st.Warnings[0], "still serving the previous certificate") {
		t.Errorf("status after a bad reload = %+v", st)
	}
	stop.Store(true)
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed during reloads; first: %v", failed.Load(), failed.Load()+ok.Load(), firstErr.Load())
	}
	if ok.Load() == 0 {
		t.Fatal("no request was made during the reloads")
	}
	if !strings.Contains(logs.String(), "reload=true") {
		t.Errorf("reloads not logged:\n%s", logs)
	}
	t.Logf("%d requests, none failed, across 15 reloads", ok.Load())
}

// TestOperatorFilesWatched: replacing the files is picked up without a
// signal, and an expiring certificate is warned about.
func TestOperatorFilesWatched(t *testing.T) {
	ca := testutil.NewCA(t, "Site PKI test root", 365*24*time.Hour)
	dir := t.TempDir()
	now := time.Now()
	c0, k0 := ca.LeafPEM(t, []string{"localhost"}, now.Add(-time.Hour), now.Add(60*24*time.Hour))
	certPath, keyPath := writePair(t, dir, c0, k0)
	// No names configured: the certificate's own are served.
	m, logs := startManager(t, Options{Source: SourceFiles, Files: FilesOptions{Cert: certPath, Key: keyPath, PollInterval: 20 * time.Millisecond}})
	if got := m.Status().Names; len(got) != 1 || got[0] != "localhost" {
		t.Fatalf("names = %v, want the certificate's", got)
	}
	port := serveManager(t, m)
	tc := &stdtls.Config{RootCAs: poolOf(t, ca.PEM)}
	c1, k1 := ca.LeafPEM(t, []string{"localhost"}, now.Add(-time.Hour), now.Add(5*24*time.Hour))
	writePair(t, dir, c1, k1)
	deadline := time.Now().Add(30 * time.Second)
	for {
		leaf, err := getVia(tc, "https://localhost:"+port+"/")
		if err != nil {
			t.Fatal(err)
		}
		if string(leaf.Raw) == string(firstCertDER(t, c1)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the replaced files were not picked up")
		}
		time.Sleep(20 * time.Millisecond)
	}
	st := m.Status()
	if len(st.Warnings) != 1 || !strings.Contains(st.Warnings[0], "operator certificate for localhost expires on") {
		t.Errorf("warnings = %q, want the expiry warning", st.Warnings)
	}
	if !strings.Contains(logs.String(), "operator certificate expires soon") {
		t.Errorf("expiry not logged:\n%s", logs)
	}
	if c := st.Certificates[0]; c.Managed || c.LastRenewalAt.IsZero() {
		t.Errorf("certificate status = %+v", c)
	}
}

// firstCertDER is the DER of the first certificate in a PEM chain.
func firstCertDER(t *testing.T, chain []byte) []byte {
	t.Helper()
	blk := decodeFirstPEM(chain)
	if blk == nil {
		t.Fatal("no PEM certificate")
	}
	return blk
}
