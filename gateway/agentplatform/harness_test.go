package agentplatform

import (
	"context"
	"crypto"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flow"
	"github.com/duo-confidential/duo-confidential/gateway/auth"
	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
	"github.com/duo-confidential/duo-confidential/gateway/keys"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

const testGitLabURL = "https://gitlab.test"

// gitlabKeys is GitLab's JWKS as the validator sees it; ready=false acts
// like a JWKS that has not been fetched yet.
type gitlabKeys struct {
	iss   *gitlabtest.Issuer
	ready atomic.Bool
}

func (k *gitlabKeys) Key(_ context.Context, kid string) (crypto.PublicKey, error) {
	if !k.ready.Load() {
		return nil, auth.ErrKeysNotReady
	}
	if kid == k.iss.KeyID() {
		return k.iss.PublicKeys()[0], nil
	}
	return nil, errors.New("unknown kid")
}

func (k *gitlabKeys) All() []crypto.PublicKey {
	if !k.ready.Load() {
		return nil
	}
	var out []crypto.PublicKey
	for _, p := range k.iss.PublicKeys() {
		out = append(out, p)
	}
	return out
}

func (k *gitlabKeys) Ready() bool { return k.ready.Load() }

// modelMetadataJSON is what Rails sends for a self-hosted model of ours.
const modelMetadataJSON = `{"provider":"openai","name":"general","endpoint":"https://ignored.example/v1","api_key":"placeholder","identifier":"custom_openai/sandbox-model"}`

type harness struct {
	t      testing.TB
	iss    *gitlabtest.Issuer
	gkeys  *gitlabKeys
	local  *keys.Store
	svc    *Service
	addr   string
	client contract.DuoWorkflowClient
	conn   *grpc.ClientConn
}

type harnessOptions struct {
	flows       map[string]flow.Flow
	inline      flow.Flow
	maxSessions int
	idle        time.Duration
	metrics     Metrics
}

func newHarness(t testing.TB, ho harnessOptions) *harness {
	t.Helper()
	iss, err := gitlabtest.New(gitlabtest.Options{URL: testGitLabURL, Audience: ServiceName, Version: "18.8.0"})
	if err != nil {
		t.Fatal(err)
	}
	local, err := keys.Open(t.TempDir(), keys.Options{Bits: 2048})
	if err != nil {
		t.Fatal(err)
	}
	gk := &gitlabKeys{iss: iss}
	gk.ready.Store(true)
	v, signer, err := gateway.NewAuth(gateway.AuthOptions{GitLabURL: testGitLabURL, GitLabKeys: gk, Local: local, ServiceName: ServiceName})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := New(Options{
		Validator:   v,
		Signer:      TokenSigner(signer),
		Flows:       ho.flows,
		InlineFlow:  ho.inline,
		Models:      testModels,
		MaxSessions: ho.maxSessions,
		IdleTimeout: ho.idle,
		Metrics:     ho.metrics,
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = svc.Serve(ln) }()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, iss: iss, gkeys: gk, local: local, svc: svc, addr: ln.Addr().String(), conn: conn, client: contract.NewDuoWorkflowClient(conn)}
	t.Cleanup(func() {
		conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		svc.Shutdown(ctx)
	})
	return h
}

func testModels(_ context.Context, m ModelMetadata) (flow.Model, error) {
	if m.Identifier != "sandbox-model" {
		return flow.Model{}, &flow.ClientError{Message: "GitLab selected model " + m.Identifier + ", which this appliance does not serve"}
	}
	return flow.Model{ID: "sandbox-model", ContextWindow: 8192}, nil
}

// railsMD is the metadata Rails/Workhorse send: a self-signed instance
// token with scopes, GitLab's headers and the model metadata.
func (h *harness) railsMD(scopes ...string) metadata.MD {
	h.t.Helper()
	opts := gitlabtest.TokenOptions{Scopes: scopes}
	tok, err := h.iss.Token(opts)
	if err != nil {
		h.t.Fatal(err)
	}
	return h.mdFor(tok, opts)
}

func (h *harness) mdFor(tok string, opts gitlabtest.TokenOptions) metadata.MD {
	md := metadata.MD{}
	for k, v := range h.iss.Headers(tok, opts) {
		md.Set(strings.ToLower(k), v...)
	}
	md.Set(HeaderModelMetadata, modelMetadataJSON)
	md.Set("x-gitlab-oauth-token", "user-oauth-token")
	return md
}

func (h *harness) ctx(md metadata.MD) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	h.t.Cleanup(cancel)
	return metadata.NewOutgoingContext(ctx, md)
}

const time1h = time.Hour

// newValidatorFor builds a second validator over the harness's keys, to
// inspect minted tokens.
func newValidatorFor(t *testing.T, h *harness) (*auth.Validator, gateway.TokenSigner, error) {
	t.Helper()
	return gateway.NewAuth(gateway.AuthOptions{GitLabURL: testGitLabURL, GitLabKeys: h.gkeys, Local: h.local, ServiceName: ServiceName})
}
