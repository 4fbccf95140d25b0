package secret

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/proxy/attest/attesttest"
	"github.com/duo-confidential/duo-confidential/proxy/attest/verifiertest"
)

var testNow = time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)

const (
	testAPIKey  = "pm-test-key-DO-NOT-LEAK-0123456789"
	testVersion = "v1.40.0"
)

func newResponder(t testing.TB, b *attesttest.Backend) *Responder {
	t.Helper()
	key, cert, err := IssueMeshCert(b.Coordinator.MeshCAKey, b.Coordinator.MeshCACert, testNow.Add(-time.Hour), testNow.Add(48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return &Responder{MeshKey: key, MeshCert: cert, Now: func() time.Time { return testNow }}
}

// fakeAPI is the server half on loopback: the coordinator's attestation
// (attesttest) behind /attest, a Responder behind /secret, with fault
// injection and an ID→K store like the backend's etcd.
type fakeAPI struct {
	*httptest.Server
	b         *attesttest.Backend
	responder *Responder

	attests, exchanges atomic.Int64
	// badEvidence makes /attest sign a quote with a flipped MRTD bit.
	badEvidence atomic.Bool
	// failSecret, when > 0, is the status /secret answers with.
	failSecret atomic.Int32
	// gate, if set, is received from before /secret answers.
	gate chan struct{}

	mu    sync.Mutex
	store map[string][KeySize]byte
}

func newFakeAPI(t testing.TB) *fakeAPI {
	t.Helper()
	b := verifiertest.Backend(t, testNow)
	f := &fakeAPI{b: b, responder: newResponder(t, b), store: map[string][KeySize]byte{}}
	f.responder.OnSecret = func(s Secret) {
		f.mu.Lock()
		f.store[s.ID] = s.Key
		f.mu.Unlock()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+AttestPath, f.attest)
	mux.HandleFunc("POST "+SecretPath, f.secret)
	f.Server = httptest.NewServer(mux)
	t.Cleanup(f.Close)
	return f
}

func (f *fakeAPI) attest(w http.ResponseWriter, r *http.Request) {
	f.attests.Add(1)
	body, _ := io.ReadAll(r.Body)
	var in AttestRequest
	if err := json.Unmarshal(body, &in); err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	var mutate func(*attesttest.TDXQuoteOptions)
	if f.badEvidence.Load() {
		mutate = func(o *attesttest.TDXQuoteOptions) { o.MrTd[0] ^= 1 }
	}
	doc, err := f.b.TDXDoc(in.Nonce, nil, mutate)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	_ = json.NewEncoder(w).Encode(AttestResponse{AttestationDoc: doc})
}

func (f *fakeAPI) secret(w http.ResponseWriter, r *http.Request) {
	f.exchanges.Add(1)
	if f.gate != nil {
		<-f.gate
	}
	if code := f.failSecret.Load(); code > 0 {
		http.Error(w, "secret service unavailable", int(code))
		return
	}
	f.responder.ServeHTTP(w, r)
}

func (f *fakeAPI) key(id string) ([KeySize]byte, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k, ok := f.store[id]
	return k, ok
}

func (f *fakeAPI) client(t testing.TB) *Client {
	t.Helper()
	c, err := NewClient(f.URL, testAPIKey, testVersion, f.Server.Client())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// exchangerFunc adapts a function to Exchanger.
type exchangerFunc func(ctx context.Context, pub []byte) (*ExchangeResponse, error)

func (f exchangerFunc) ExchangeSecret(ctx context.Context, pub []byte) (*ExchangeResponse, error) {
	return f(ctx, pub)
}
