package auth

import "strings"

// Header names GitLab sends with every gateway call (gRPC metadata uses the
// same names in lower case).
const (
	HeaderAuthorization      = "Authorization"
	HeaderAuthenticationType = "X-Gitlab-Authentication-Type"
	HeaderRealm              = "X-Gitlab-Realm"
	HeaderInstanceID         = "X-Gitlab-Instance-Id"
	HeaderGlobalUserID       = "X-Gitlab-Global-User-Id"
	// HeaderDuoSeatCount is only logged by GitLab's current gateway, never
	// enforced; it is carried for the caller's logs.
	HeaderDuoSeatCount = "X-Gitlab-Duo-Seat-Count"
)

// AuthTypeOIDC is the only accepted X-Gitlab-Authentication-Type.
const AuthTypeOIDC = "oidc"

// Request holds the header values Validate needs. An empty string means the
// header was absent (an empty Authorization header is treated as absent).
type Request struct {
	Authorization      string // Authorization: "Bearer <JWT>"
	AuthenticationType string // X-Gitlab-Authentication-Type
	Realm              string // X-Gitlab-Realm
	InstanceID         string // X-Gitlab-Instance-Id
	GlobalUserID       string // X-Gitlab-Global-User-Id
	DuoSeatCount       string // X-Gitlab-Duo-Seat-Count (informational)
}

// RequestFromHeaders builds a Request from any header getter: http.Header.Get,
// a fasthttp Peek wrapper, or a gRPC metadata lookup.
func RequestFromHeaders(get func(name string) string) Request {
	return Request{
		Authorization:      get(HeaderAuthorization),
		AuthenticationType: get(HeaderAuthenticationType),
		Realm:              get(HeaderRealm),
		InstanceID:         get(HeaderInstanceID),
		GlobalUserID:       get(HeaderGlobalUserID),
		DuoSeatCount:       get(HeaderDuoSeatCount),
	}
}

// bearerToken splits the Authorization value like GitLab's gateway does
// (str.partition(" ")): the scheme is everything before the first space and
// must be "bearer" in any case; the token is everything after it.
func bearerToken(h string) (string, *Error) {
	if h == "" {
		return "", unauthorized(MsgNoAuthorization, "")
	}
	scheme, token, _ := strings.Cut(h, " ")
	if !strings.EqualFold(scheme, "bearer") {
		return "", unauthorized(MsgInvalidAuthHeader, "scheme is not bearer")
	}
	return token, nil
}
