package agentplatform

import (
	"context"
	"errors"
	"sort"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"github.com/duo-confidential/duo-confidential/gateway/auth"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

// GenerateToken mints a 1 h RS256 token (iss = aud = ServiceName, sub = the
// caller's x-gitlab-global-user-id) for IDEs and CI executors that connect
// directly. Tokens this service issued cannot mint more.
func (s *Service) GenerateToken(ctx context.Context, r *contract.GenerateTokenRequest) (*contract.GenerateTokenResponse, error) {
	c := claimsFrom(ctx)
	def := r.GetWorkflowDefinition()
	if c == nil || c.SelfIssued || !(requireExecuteScope(c, def) || (def == "chat" && requireExecuteScope(c, ""))) {
		return nil, status.Error(codes.PermissionDenied, msgUnauthorizedToken)
	}
	if s.o.Signer == nil {
		return nil, status.Error(codes.Internal, auth.MsgSigningFailed)
	}
	signer, err := s.o.Signer()
	if err != nil {
		s.log.Error("agent platform: no signing key", "error", err)
		return nil, status.Error(codes.Internal, auth.MsgSigningFailed)
	}
	sc := *signer
	sc.Scopes = TokenScopes
	tok, exp, err := sc.UserAccessToken(c, nil)
	if err != nil {
		var ae *auth.Error
		if errors.As(err, &ae) && ae.Status == 403 {
			return nil, status.Error(codes.PermissionDenied, msgUnauthorizedToken)
		}
		s.log.Error("agent platform: sign token", "error", err)
		return nil, status.Error(codes.Internal, auth.MsgSigningFailed)
	}
	return &contract.GenerateTokenResponse{Token: tok, ExpiresAt: exp.Unix()}, nil
}

// ListTools returns every tool of every flow as an OpenAI function spec,
// once per name. GitLab's admin health check calls it and only needs it to
// succeed; the list is the real catalogue.
func (s *Service) ListTools(ctx context.Context, _ *contract.ListToolsRequest) (*contract.ListToolsResponse, error) {
	seen := map[string]bool{}
	out := &contract.ListToolsResponse{}
	for _, name := range s.flowNames() {
		for _, t := range s.o.Flows[name].Tools() {
			n := toolName(t)
			if n == "" || seen[n] {
				continue
			}
			seen[n] = true
			st, err := structpb.NewStruct(t)
			if err != nil {
				s.log.Error("agent platform: tool spec is not JSON-like", "tool", n, "error", err)
				return nil, status.Error(codes.Internal, "tool catalogue is malformed")
			}
			out.Tools = append(out.Tools, st)
		}
	}
	return out, nil
}

func toolName(t map[string]any) string {
	f, _ := t["function"].(map[string]any)
	n, _ := f["name"].(string)
	return n
}

// ListFlows describes the flows this service runs.
func (s *Service) ListFlows(ctx context.Context, r *contract.ListFlowsRequest) (*contract.ListFlowsResponse, error) {
	ids := r.GetFilters().GetFlowIdentifier()
	out := &contract.ListFlowsResponse{}
	for _, name := range s.flowNames() {
		if len(ids) > 0 && !contains(ids, name) {
			continue
		}
		env := "chat"
		if name != "chat" {
			env = "ambient"
		}
		if envs := r.GetFilters().GetEnvironment(); len(envs) > 0 && !contains(envs, env) {
			continue
		}
		st, err := structpb.NewStruct(map[string]any{"name": name, "environment": env, "version": "v1"})
		if err != nil {
			return nil, status.Error(codes.Internal, "flow list is malformed")
		}
		out.Configs = append(out.Configs, st)
	}
	return out, nil
}

func (s *Service) flowNames() []string {
	names := make([]string, 0, len(s.o.Flows))
	for n := range s.o.Flows {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
