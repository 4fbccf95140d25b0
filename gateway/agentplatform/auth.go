package agentplatform

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/duo-confidential/duo-confidential/gateway/auth"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Unit primitives (token scopes) the service checks.
const (
	ScopeChat          = "duo_chat"
	ScopeAgentPlatform = "duo_agent_platform"
	ScopeLegacyExecute = "duo_workflow_execute_workflow"
)

// TokenScopes are the primitives a GenerateToken token may carry (the
// caller's scopes ∩ these): the ones this service checks.
var TokenScopes = []string{ScopeAgentPlatform, ScopeLegacyExecute, ScopeChat}

// Texts GitLab's service answers with.
const (
	msgUnauthorizedToken = "Unauthorized to generate token"
	msgUnauthorizedExec  = "Unauthorized to execute "
)

type claimsKey struct{}

// claimsFrom returns the caller's validated claims.
func claimsFrom(ctx context.Context) *auth.Claims {
	c, _ := ctx.Value(claimsKey{}).(*auth.Claims)
	return c
}

// unauthenticated lists the methods every caller may use: health, as in
// GitLab's later builds (Kubernetes probes carry no token).
func unauthenticated(method string) bool {
	return strings.HasPrefix(method, "/grpc.health.v1.Health/")
}

func (s *Service) unaryAuth(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if unauthenticated(info.FullMethod) {
		return h(ctx, req)
	}
	ctx, err := s.authenticate(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func (s *Service) streamAuth(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if unauthenticated(info.FullMethod) {
		return h(srv, ss)
	}
	ctx, err := s.authenticate(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	return h(srv, &authedStream{ServerStream: ss, ctx: ctx})
}

type authedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (a *authedStream) Context() context.Context { return a.ctx }

// authenticate validates the caller's token and headers as GitLab's
// service does, answering UNAUTHENTICATED with GitLab's texts and
// UNAVAILABLE while GitLab's keys have not been fetched yet.
func (s *Service) authenticate(ctx context.Context, method string) (context.Context, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	c, err := s.o.Validator.Validate(ctx, auth.RequestFromHeaders(func(name string) string { return first(md, name) }))
	if err != nil {
		st := authStatus(err)
		s.log.Info("agent platform: authentication failed", "method", method, "code", st.Code().String(), "error", err.Error())
		s.o.Metrics.AuthFailed(st.Code().String())
		return ctx, st.Err()
	}
	return context.WithValue(ctx, claimsKey{}, c), nil
}

// authStatus maps the validator's HTTP-shaped errors to gRPC.
func authStatus(err error) *status.Status {
	var ae *auth.Error
	if !errors.As(err, &ae) {
		return status.New(codes.Unauthenticated, auth.MsgForbidden)
	}
	switch ae.Status {
	case http.StatusServiceUnavailable:
		return status.New(codes.Unavailable, ae.Message)
	case http.StatusForbidden:
		return status.New(codes.PermissionDenied, ae.Message)
	case http.StatusInternalServerError:
		return status.New(codes.Internal, ae.Message)
	default:
		return status.New(codes.Unauthenticated, ae.Message)
	}
}

// first returns the first value of a metadata key (keys are lower case).
func first(md metadata.MD, name string) string {
	v := md.Get(name)
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// requireExecuteScope is GitLab's ExecuteWorkflow/GenerateToken rule:
// chat needs duo_chat, everything else duo_agent_platform (or the legacy
// duo_workflow_execute_workflow).
func requireExecuteScope(c *auth.Claims, definition string) bool {
	if c == nil {
		return false
	}
	if definition == "chat" {
		return c.HasScope(ScopeChat)
	}
	return c.HasScope(ScopeAgentPlatform) || c.HasScope(ScopeLegacyExecute)
}
