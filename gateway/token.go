package gateway

import (
	"errors"

	"github.com/duo-confidential/duo-confidential/gateway/auth"
	"github.com/valyala/fasthttp"
)

// userAccessToken is the answer of POST /v1/code/user_access_token.
type userAccessToken struct {
	Token     string `json:"token"`
	ExpiresAt int64  `json:"expires_at"`
}

// handleUserAccessToken mints a direct-access token for the IDE (Rails'
// POST /api/v4/code_suggestions/direct_access calls this), valid on the
// completion routes for the caller's global user id.
func (s *Server) handleUserAccessToken(c *call) error {
	if s.o.Signer == nil {
		return &auth.Error{Status: fasthttp.StatusInternalServerError, Message: auth.MsgSigningFailed, Reason: "no signing key configured"}
	}
	signer, err := s.o.Signer()
	if err != nil {
		return &auth.Error{Status: fasthttp.StatusInternalServerError, Message: auth.MsgSigningFailed, Reason: err.Error()}
	}
	tok, exp, err := signer.UserAccessToken(c.claims, nil)
	if err != nil {
		var ae *auth.Error
		if errors.As(err, &ae) {
			return ae
		}
		return &auth.Error{Status: fasthttp.StatusInternalServerError, Message: auth.MsgSigningFailed, Reason: err.Error()}
	}
	return c.writeJSON(userAccessToken{Token: tok, ExpiresAt: exp.Unix()})
}
