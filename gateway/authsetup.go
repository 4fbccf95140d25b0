package gateway

import (
	"errors"
	"fmt"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/auth"
	"github.com/duo-confidential/duo-confidential/gateway/keys"
	"github.com/duo-confidential/duo-confidential/jwks"
)

// DefaultServiceName is the audience GitLab puts in its tokens for the AI
// Gateway, and the issuer of the gateway's own tokens.
const DefaultServiceName = "gitlab-ai-gateway"

// AuthOptions says whose tokens the gateway accepts.
type AuthOptions struct {
	// GitLabURL is the iss of GitLab's tokens, exactly as GitLab writes it.
	GitLabURL string
	// GitLabKeys is GitLab's key set (a *jwks.Set).
	GitLabKeys auth.KeySource
	// Local holds the gateway's own signing and validation keys.
	Local *keys.Store
	// ServiceName is the audience and our issuer (default DefaultServiceName).
	ServiceName string
	// Leeway is the clock skew allowed (0: auth.DefaultLeeway).
	Leeway time.Duration
	Now    func() time.Time
}

// NewAuth builds the validator of GitLab's and our own tokens and the signer
// of direct-access tokens. A key set that has not loaded yet makes
// authenticated routes answer 503, not 401.
func NewAuth(o AuthOptions) (*auth.Validator, TokenSigner, error) {
	if o.GitLabURL == "" || o.GitLabKeys == nil || o.Local == nil {
		return nil, nil, errors.New("gateway auth: GitLab URL, GitLab keys and local keys are required")
	}
	name := o.ServiceName
	if name == "" {
		name = DefaultServiceName
	}
	v, err := auth.NewValidator(auth.Config{
		Audience: name,
		Issuers: []auth.Issuer{
			{Name: o.GitLabURL, Keys: o.GitLabKeys},
			{Name: name, Keys: o.Local},
		},
		Leeway:         o.Leeway,
		Now:            o.Now,
		NotReadyErrors: []error{jwks.ErrNotReady},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("gateway auth: %w", err)
	}
	signer := func() (*auth.Signer, error) {
		k := o.Local.Signing()
		if k.Private == nil {
			return nil, errors.New("no signing key")
		}
		return &auth.Signer{Key: k.Private, KeyID: k.ID, Issuer: name, TTL: auth.DefaultUserTokenTTL, Now: o.Now}, nil
	}
	return v, signer, nil
}
