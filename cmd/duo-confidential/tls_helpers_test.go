package main

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/internal/statedir"
)

// localCAClient returns a client that trusts only the local CA the binary
// created in state, waiting (bounded) for the CA file to appear.
func localCAClient(t *testing.T, state string) *http.Client {
	t.Helper()
	path := filepath.Join(state, statedir.LocalCADir, statedir.LocalCACertFile)
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
