package agentplatform

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flow"
	"github.com/duo-confidential/duo-confidential/gateway/auth"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
)

// ServiceName is the audience of GitLab's tokens for this service and the
// issuer of the tokens GenerateToken mints (GitLab's
// DUO_WORKFLOW_CLOUD_CONNECTOR_SERVICE_NAME).
const ServiceName = "gitlab-duo-workflow-service"

// Limits GitLab's service and Workhorse use; see the spec §2.1.
const (
	// MaxMessageBytes bounds a gRPC message each way (4 MiB).
	MaxMessageBytes = 4 << 20
	// MaxHeaderListBytes bounds request metadata: Rails sends a JWT, the
	// user's OAuth token and the model JSON, beyond gRPC's usual 8 KiB.
	MaxHeaderListBytes = 64 << 10
	// DefaultMaxSessions bounds concurrent ExecuteWorkflow streams.
	DefaultMaxSessions = 1000
	// DefaultIdleTimeout ends a session the client stopped talking to
	// (heartbeats count as talking; Workhorse sends one every ~60 s).
	DefaultIdleTimeout = 10 * time.Minute
	// DefaultActionTimeout bounds the wait for one action's answer.
	DefaultActionTimeout = 5 * time.Minute
)

// TokenSigner returns the signer of GenerateToken's tokens (the current
// signing key; it changes on rotation).
type TokenSigner func() (*auth.Signer, error)

// ModelResolver validates the model GitLab selected (the
// x-gitlab-agent-platform-model-metadata header, already parsed) and
// returns the appliance model to use.
type ModelResolver func(ctx context.Context, m ModelMetadata) (flow.Model, error)

// Options configures a Service.
type Options struct {
	// Validator checks GitLab's and our own tokens (audience ServiceName).
	Validator *auth.Validator
	// Signer mints GenerateToken's tokens.
	Signer TokenSigner
	// Flows by workflow definition (e.g. "chat").
	Flows map[string]flow.Flow
	// InlineFlow runs a startRequest that carries an inline flowConfig
	// (custom flows); nil refuses them.
	InlineFlow flow.Flow
	// Models resolves the model metadata header; required for
	// ExecuteWorkflow.
	Models ModelResolver
	// TLS is the server's TLS configuration; nil serves plaintext
	// (tls.source: off).
	TLS *tls.Config
	// MaxSessions bounds concurrent sessions (0: DefaultMaxSessions).
	MaxSessions int
	// IdleTimeout ends a silent session (0: DefaultIdleTimeout).
	IdleTimeout time.Duration
	// ActionTimeout bounds one action round trip (0: DefaultActionTimeout).
	ActionTimeout time.Duration
	// Metrics records observations; nil records nothing.
	Metrics Metrics
	// Logger gets structured logs without prompts or tool payloads.
	Logger *slog.Logger
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Service is the DuoWorkflow gRPC service.
type Service struct {
	contract.UnimplementedDuoWorkflowServer

	o      Options
	log    *slog.Logger
	grpc   *grpc.Server
	health *health.Server
	slots  chan struct{}

	mu       sync.Mutex
	sessions map[*session]struct{}
	// stopping: the drain's grace for sessions is over; sessions that
	// still start (accepted before the GOAWAY reached their client) are
	// refused with UNAVAILABLE.
	stopping bool
}

// New builds the service and its gRPC server; Serve starts it.
func New(o Options) (*Service, error) {
	if o.Validator == nil {
		return nil, errors.New("agentplatform: Options.Validator is required")
	}
	if o.MaxSessions <= 0 {
		o.MaxSessions = DefaultMaxSessions
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.ActionTimeout <= 0 {
		o.ActionTimeout = DefaultActionTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Metrics == nil {
		o.Metrics = nopMetrics{}
	}
	s := &Service{
		o:        o,
		log:      o.Logger,
		slots:    make(chan struct{}, o.MaxSessions),
		sessions: make(map[*session]struct{}),
		health:   health.NewServer(),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxMessageBytes),
		grpc.MaxSendMsgSize(MaxMessageBytes),
		grpc.MaxHeaderListSize(MaxHeaderListBytes),
		// Workhorse pings every 20 s, also without streams; grpc-go's
		// default policy (5 min, no idle pings) would GOAWAY it.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 20 * time.Second, Timeout: 20 * time.Second}),
		grpc.ChainUnaryInterceptor(s.unaryAuth),
		grpc.ChainStreamInterceptor(s.streamAuth),
	}
	if o.TLS != nil {
		// credentials.NewTLS adds "h2" to NextProtos: Workhorse requires it.
		opts = append(opts, grpc.Creds(credentials.NewTLS(o.TLS)))
	}
	s.grpc = grpc.NewServer(opts...)
	contract.RegisterDuoWorkflowServer(s.grpc, s)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus("DuoWorkflow", healthpb.HealthCheckResponse_SERVING)
	// No reflection: GitLab's service has it off by default too.
	return s, nil
}

// Serve accepts connections on ln until Shutdown; it returns nil after a
// Shutdown.
func (s *Service) Serve(ln net.Listener) error {
	if err := s.grpc.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("agent platform: serve %s: %w", ln.Addr(), err)
	}
	return nil
}

// Shutdown drains within ctx: health turns NOT_SERVING and the gRPC
// server stops gracefully (GOAWAY: clients open new streams on a new
// connection, which a load balancer sends to another replica), while the
// sessions already running may finish. Sessions still running
// sessionStopReserve before ctx's deadline are stopped as on a server
// shutdown (a STOPPED checkpoint, then UNAVAILABLE, so the client resumes
// the workflow elsewhere); when ctx ends, remaining connections are closed.
func (s *Service) Shutdown(ctx context.Context) {
	s.health.Shutdown()
	done := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(done) }()
	var stopAt <-chan time.Time
	if deadline, ok := ctx.Deadline(); ok {
		t := time.NewTimer(sessionGrace(time.Until(deadline)))
		defer t.Stop()
		stopAt = t.C
	}
	select {
	case <-done:
		return
	case <-stopAt:
	case <-ctx.Done():
	}
	s.stopSessions(stopServerShutdown)
	select {
	case <-done:
	case <-ctx.Done():
		s.grpc.Stop()
		<-done
	}
}

// sessionStopReserve is what a drain keeps, at the end, for stopping the
// sessions that did not finish: the STOPPED checkpoint and the streams'
// ends (each bounded by stopReportTimeout).
const sessionStopReserve = stopReportTimeout + time.Second

// sessionGrace is how much of the drain time left running sessions may
// use: all but sessionStopReserve, or half when the drain is shorter than
// two reserves.
func sessionGrace(left time.Duration) time.Duration {
	if left < 2*sessionStopReserve {
		return max(left/2, 0)
	}
	return left - sessionStopReserve
}

// stopSessions stops every running session with reason and refuses new
// ones.
func (s *Service) stopSessions(reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopping = true
	for ss := range s.sessions {
		ss.stop(reason)
	}
}

// ActiveSessions is the number of running sessions.
func (s *Service) ActiveSessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}
