package gitlabconnect_test

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/gitlabconnect"
	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
)

// Tokens the stand-in knows.
const (
	adminToken   = "glpat-admin-api"
	readToken    = "glpat-admin-read-api"
	userToken    = "glpat-developer"
	unknownToken = "glpat-nobody"
)

// fixture is a stand-in GitLab and a client for it.
type fixture struct {
	gl  *gitlabtest.Admin
	url string
}

func newFixture(t *testing.T, o gitlabtest.AdminOptions) *fixture {
	t.Helper()
	gl, err := gitlabtest.NewAdmin(o)
	if err != nil {
		t.Fatal(err)
	}
	gl.AddToken(adminToken, "root", true, "api", "admin_mode")
	gl.AddToken(readToken, "root", true, "read_api")
	gl.AddToken(userToken, "dev", false, "api")
	srv := httptest.NewServer(gl.Handler())
	t.Cleanup(srv.Close)
	return &fixture{gl: gl, url: srv.URL}
}

func (f *fixture) client(t *testing.T, token string) *gitlabconnect.Client {
	t.Helper()
	c, err := gitlabconnect.NewClient(gitlabconnect.ClientOptions{GitLabURL: f.url, Token: token, CallTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// target is an appliance with two models: a chat model serving everything
// and a code model for code suggestions, plus an Agent Platform listener.
func target() gitlabconnect.Target {
	return gitlabconnect.Target{
		GatewayURL:        "https://duo.example.com:5052",
		AgentPlatformAddr: "duo.example.com:50052",
		AgentPlatformTLS:  true,
		TimeoutSeconds:    120,
		Models: []gitlabconnect.Model{
			{Name: "duo-confidential-chat", Endpoint: "https://duo.example.com:8080/v1", Identifier: "custom_openai/chat"},
			{Name: "duo-confidential-code", Endpoint: "https://duo.example.com:8080/v1", Identifier: "custom_openai/code"},
		},
		Routes: map[string]string{"CODE_COMPLETIONS": "duo-confidential-code", "CODE_GENERATIONS": "duo-confidential-code"},
	}
}

func ctx(t *testing.T) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// connect plans and applies, failing the test on any error.
func connect(t *testing.T, c *gitlabconnect.Client, tg gitlabconnect.Target, st *gitlabconnect.State) (*gitlabconnect.Plan, *gitlabconnect.Result) {
	t.Helper()
	p, err := c.Plan(ctx(t), tg, st.IDs())
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	r := c.Apply(ctx(t), p, tg)
	st.Record(c.GitLabURL(), p, r)
	return p, r
}
