package agentplatform

import (
	"context"
	"crypto/tls"
	"fmt"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
)

// Probe runs GitLab's Agent Platform health check
// (DuoAgentPlatformProbe): ListTools on addr ("host:port", no scheme) with
// the metadata Rails sends, over TLS with tlsConfig (nil: plaintext, as
// with DUO_AGENT_PLATFORM_SERVICE_SECURE=false). Success means the call
// returned and its answer encodes as JSON; it returns the tool count.
func Probe(ctx context.Context, addr string, tlsConfig *tls.Config, md metadata.MD) (int, error) {
	creds := insecure.NewCredentials()
	if tlsConfig != nil {
		creds = credentials.NewTLS(tlsConfig)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageBytes), grpc.MaxCallSendMsgSize(MaxMessageBytes)))
	if err != nil {
		return 0, fmt.Errorf("agent platform at %s: %w", addr, err)
	}
	defer conn.Close()
	r, err := contract.NewDuoWorkflowClient(conn).ListTools(metadata.NewOutgoingContext(ctx, md), &contract.ListToolsRequest{})
	if err != nil {
		return 0, fmt.Errorf("GitLab Duo Workflow Service at %s is not operational: %w", addr, err)
	}
	if _, err := protojson.Marshal(r); err != nil {
		return 0, fmt.Errorf("GitLab Duo Workflow Service at %s answered ListTools with something GitLab cannot encode: %w", addr, err)
	}
	return len(r.GetTools()), nil
}
