package gitlabtest_test

import (
	"fmt"
	"net/http/httptest"

	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
)

// A demo GitLab: serve discovery and JWKS, then call the gateway with a
// token and the headers Rails would send.
func Example() {
	iss, err := gitlabtest.New(gitlabtest.Options{})
	if err != nil {
		panic(err)
	}
	srv := httptest.NewTLSServer(iss.Handler())
	defer srv.Close()
	iss.SetURL(srv.URL) // the issuer URL is fixed here, never taken from Host

	tok, err := iss.Token(gitlabtest.TokenOptions{})
	if err != nil {
		panic(err)
	}
	h := iss.Headers(tok, gitlabtest.TokenOptions{})
	fmt.Println(h.Get("X-Gitlab-Authentication-Type"), h.Get("X-Gitlab-Realm"))
	// Output: oidc self-managed
}
