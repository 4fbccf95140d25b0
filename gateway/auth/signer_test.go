package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestUserAccessToken(t *testing.T) {
	e := newEnv(t, nil)
	caller, err := e.v.Validate(context.Background(), gitlabRequest(mintGitLab(t, e.k, tok{
		claims: map[string]any{"scopes": []any{"complete_code", "duo_chat", "ai_gateway_model_provider_proxy"}, "duo_seat_count": "42"},
	})))
	if err != nil {
		t.Fatal(err)
	}
	s := &Signer{Key: e.k.self, KeyID: testSelfKid, Issuer: testAudience, Now: func() time.Time { return testNow.Add(300 * time.Millisecond) }}
	token, exp, err := s.UserAccessToken(caller, map[string]any{"gitlab_project_id": "7"})
	if err != nil {
		t.Fatal(err)
	}
	if !exp.Equal(testNow.Add(time.Hour)) {
		t.Errorf("expiresAt = %v", exp)
	}

	parts := strings.Split(token, ".")
	var hdr, claims map[string]any
	for i, dst := range []*map[string]any{&hdr, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, dst); err != nil {
			t.Fatal(err)
		}
	}
	if hdr["alg"] != "RS256" || hdr["typ"] != "JWT" || hdr["kid"] != testSelfKid || len(hdr) != 3 {
		t.Errorf("header = %v", hdr)
	}
	iat := float64(testNow.Unix())
	want := map[string]any{
		"iss": testAudience, "sub": testGUID, "aud": testAudience,
		"iat": iat, "nbf": iat, "exp": iat + 3600,
		"gitlab_realm": testRealm, "gitlab_instance_id": testInstance, "gitlab_instance_uid": testInstance,
		"scopes": []any{"complete_code", "ai_gateway_model_provider_proxy"}, "duo_seat_count": "42",
		"gitlab_project_id": "7",
	}
	jti, _ := claims["jti"].(string)
	if len(jti) != 36 || jti[14] != '4' {
		t.Errorf("jti = %q", jti)
	}
	delete(claims, "jti")
	if len(claims) != len(want) {
		t.Errorf("claims = %v", claims)
	}
	for k, w := range want {
		if mustJSON(claims[k]) != mustJSON(w) {
			t.Errorf("%s = %v, want %v", k, claims[k], w)
		}
	}

	// It validates through the same middleware, bound to the global user id.
	c, err := e.v.Validate(context.Background(), gitlabRequest(token))
	if err != nil {
		t.Fatal(err)
	}
	if !c.SelfIssued || c.GlobalUserID != testGUID || !slices.Equal(c.Scopes, []string{"complete_code", "ai_gateway_model_provider_proxy"}) {
		t.Errorf("claims = %+v", c)
	}
	// A self-issued token cannot mint another one (disallowed_issuers).
	_, _, err = s.UserAccessToken(c, nil)
	checkErr(t, err, http.StatusForbidden, MsgUserAccessTokenForbidden, "issued by this gateway")
}

func TestUserAccessTokenRefusals(t *testing.T) {
	k := keys(t)
	good := func() *Claims {
		return &Claims{Issuer: testGitLab, Realm: "saas", InstanceID: testInstance, GlobalUserID: testGUID, Scopes: []string{"complete_code"}}
	}
	s := &Signer{Key: k.self, Issuer: testAudience}
	if tokStr, _, err := s.UserAccessToken(good(), nil); err != nil || strings.Contains(tokStr, "gitlab_instance_uid") {
		t.Fatalf("good caller: %v", err)
	}
	cases := []struct {
		name   string
		s      *Signer
		c      func() *Claims
		extra  map[string]any
		status int
		msg    string
	}{
		{"nil caller", s, func() *Claims { return nil }, nil, 403, MsgUserAccessTokenForbidden},
		{"no usable scope", s, func() *Claims { c := good(); c.Scopes = []string{"duo_chat"}; return c }, nil, 403, MsgUserAccessTokenForbidden},
		{"issued by us", s, func() *Claims { c := good(); c.Issuer = testAudience; return c }, nil, 403, MsgUserAccessTokenForbidden},
		{"no global user id", s, func() *Claims { c := good(); c.GlobalUserID = ""; return c }, nil, 403, MsgUserAccessTokenForbidden},
		{"no key", &Signer{Issuer: testAudience}, good, nil, 500, MsgSigningFailed},
		{"weak key", &Signer{Key: k.weak, Issuer: testAudience}, good, nil, 500, MsgSigningFailed},
		{"no issuer", &Signer{Key: k.self}, good, nil, 500, MsgSigningFailed},
		{"extra overrides sub", s, good, map[string]any{"sub": "admin"}, 500, MsgSigningFailed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tokStr, _, err := tc.s.UserAccessToken(tc.c(), tc.extra)
			if tokStr != "" {
				t.Fatal("token issued")
			}
			checkErr(t, err, tc.status, tc.msg, "")
			var ae *Error
			if !errors.As(err, &ae) || !strings.Contains(string(ae.Body()), `"detail"`) {
				t.Errorf("body %s", ae.Body())
			}
		})
	}
}
