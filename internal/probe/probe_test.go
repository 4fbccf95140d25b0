package probe

import "testing"

func TestPublicReason(t *testing.T) {
	for in, want := range map[string]string{
		"":                              "",
		"waiting for first attestation": "waiting for first attestation",
		`confidential backend not ready: inference secret not ready: secret exchange failed: HTTP 500: {"error":"no secret for ID \"Zm9vYmFy\""}`: "confidential backend not ready: inference secret not ready: secret exchange failed",
		"inference secret not ready: backend lost the inference secret and the replacement failed: dial tcp 10.1.2.3:443: refused":                "inference secret not ready: backend lost the inference secret and the replacement failed",
		"waiting for GitLab keys: GET https://gitlab.example/oauth/discovery/keys: HTTP 502; certificate for gw.example missing":                  "waiting for GitLab keys; certificate for gw.example missing",
	} {
		if got := PublicReason(in); got != want {
			t.Errorf("PublicReason(%q)\n got %q\nwant %q", in, got, want)
		}
	}
}
