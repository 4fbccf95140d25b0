package auth

import (
	"context"
	"net/http"
	"strings"
	"testing"
)

// FuzzValidate feeds random Authorization values and GitLab headers to a
// validator. It must never panic, must answer every failure with a 401
// *Error, and may only accept the one legitimately minted token together
// with the headers that belong to it.
func FuzzValidate(f *testing.F) {
	e := newEnv(f, nil)
	valid := mintGitLab(f, e.k, tok{})
	f.Add("Bearer "+valid, "oidc", testRealm, testInstance, testGUID)
	f.Add("Bearer "+mintGitLab(f, e.k, tok{noKid: true}), "oidc", testRealm, testInstance, testGUID)
	f.Add("Bearer "+valid, "oidc", "saas", testInstance, testGUID)
	f.Add("bearer "+valid+".", "oidc", testRealm, testInstance, testGUID)
	f.Add("Bearer "+rawToken(`{"alg":"none"}`, mustJSON(gitlabClaims()), rsaSizedSig()), "oidc", testRealm, testInstance, testGUID)
	f.Add("Bearer "+rawToken(`{"alg":"RS256","kid":"../../etc/passwd"}`, mustJSON(gitlabClaims()), rsaSizedSig()), "oidc", "", "", "")

	validNoKid := mintGitLab(f, e.k, tok{noKid: true})
	f.Fuzz(func(t *testing.T, authz, authType, realm, instance, guid string) {
		c, err := e.v.Validate(context.Background(), Request{
			Authorization: authz, AuthenticationType: authType, Realm: realm, InstanceID: instance, GlobalUserID: guid,
		})
		if err == nil {
			_, token, _ := strings.Cut(authz, " ")
			if (token != valid && token != validNoKid) || authType != "oidc" || realm != testRealm || instance != testInstance || c == nil {
				t.Fatalf("accepted %q with %q %q %q", authz, authType, realm, instance)
			}
			return
		}
		if c != nil {
			t.Fatal("claims returned with an error")
		}
		ae, ok := err.(*Error)
		if !ok || ae.Status != http.StatusUnauthorized || ae.Message == "" {
			t.Fatalf("err = %#v", err)
		}
	})
}
