package main

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// localCAClient returns a client that trusts only the local CA the binary
// created in state, waiting (bounded) for the CA file to appear.
func localCAClient(t *testing.T, state string) *http.Client {
	t.Helper()
	path := filepath.Join(state, "local-ca", "ca.crt")
	var pem []byte
	deadline := time.Now().Add(procLimit)
	for {
		var err error
		if pem, err = os.ReadFile(path); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no local CA certificate: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("%s holds no certificate", path)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Timeout: procLimit, Transport: tr}
}
