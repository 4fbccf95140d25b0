package auth

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
)

// BenchmarkValidate measures a full validation of a GitLab-shaped token
// (kid lookup, RS256 verify with a 2048-bit key, claims, header checks).
func BenchmarkValidate(b *testing.B) {
	e := newEnv(b, nil)
	req := gitlabRequest(mintGitLab(b, e.k, tok{}))
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := e.v.Validate(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "validations/s")
}

// BenchmarkValidateParallel runs the same validation on all cores.
func BenchmarkValidateParallel(b *testing.B) {
	e := newEnv(b, nil)
	req := gitlabRequest(mintGitLab(b, e.k, tok{}))
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := e.v.Validate(ctx, req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkRejectJunk measures the cost of refusing a malformed token (the
// DoS-relevant path: no key lookup, no RSA).
func BenchmarkRejectJunk(b *testing.B) {
	e := newEnv(b, nil)
	req := gitlabRequest(rawToken(`{"alg":"HS256","typ":"JWT"}`, mustJSON(gitlabClaims()), rsaSizedSig()))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.v.Validate(ctx, req); err == nil {
			b.Fatal("accepted")
		}
	}
}

// BenchmarkRSAVerifyFloor is the floor under BenchmarkValidate: SHA-256 of
// a GitLab-sized signing input and rsa.VerifyPKCS1v15 with the same
// 2048-bit key, nothing else. Validate cannot be faster than this; the
// difference between the two is the validator's own cost.
func BenchmarkRSAVerifyFloor(b *testing.B) {
	e := newEnv(b, nil)
	token := mintGitLab(b, e.k, tok{})
	dot := strings.LastIndexByte(token, '.')
	sig, err := base64.RawURLEncoding.DecodeString(token[dot+1:])
	if err != nil {
		b.Fatal(err)
	}
	pub := &e.k.gitlab.PublicKey
	signingInput := []byte(token[:dot])
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		sum := sha256.Sum256(signingInput)
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifications/s")
}
