package agentplatform

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/flow"
	"github.com/duo-confidential/duo-confidential/gateway/model"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Stop reasons that end a session with UNAVAILABLE (so the client retries
// on another instance) instead of OK.
const (
	stopServerShutdown    = "DUO_CONFIDENTIAL_SERVER_SHUTDOWN"
	stopWorkhorseShutdown = "WORKHORSE_SERVER_SHUTDOWN"
	stopHalfClose         = "client closed its send direction"
)

// maxPending bounds the actions awaiting an answer in one session; flows
// wait for each answer, so more than a few means a broken flow.
const maxPending = 16

// Texts of the statuses a session ends with (GitLab's where it has one).
const (
	msgFirstNotStart  = "First message must be a startRequest"
	msgTooLarge       = "Outgoing message too large."
	msgCancelled      = "RPC cancelled by client"
	msgTooManySession = "Too many concurrent Agent Platform sessions; retry later"
	msgDraining       = "The Agent Platform service is shutting down; retry"
)

var (
	errIdle     = errors.New("session idle")
	errPeerGone = errors.New("client went away")
)

type session struct {
	svc    *Service
	stream contract.DuoWorkflow_ExecuteWorkflowServer
	start  *contract.StartWorkflowRequest
	caller flow.Caller

	ctx    context.Context
	cancel context.CancelCauseFunc
	touch  chan struct{}

	sendMu sync.Mutex

	mu      sync.Mutex
	pending map[string]chan *contract.ActionResponse
}

// stopped wraps flow.ErrStopped with the client's reason.
type stopped struct{ reason string }

func (e *stopped) Error() string { return "workflow stopped: " + e.reason }
func (e *stopped) Unwrap() error { return flow.ErrStopped }

// ExecuteWorkflow runs one session: the first event must be a
// startRequest; then the workflow's flow drives the stream with actions.
func (s *Service) ExecuteWorkflow(stream contract.DuoWorkflow_ExecuteWorkflowServer) error {
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	default:
		s.o.Metrics.SessionEnded(codes.ResourceExhausted.String(), false)
		return status.Error(codes.ResourceExhausted, msgTooManySession)
	}
	started := false
	err := s.execute(stream, &started)
	s.o.Metrics.SessionEnded(status.Code(err).String(), started)
	return err
}

func (s *Service) execute(stream contract.DuoWorkflow_ExecuteWorkflowServer, started *bool) error {
	ctx := stream.Context()
	first, err := s.recvFirst(ctx, stream)
	if err != nil {
		return err
	}
	start := first.GetStartRequest()
	if start == nil {
		return status.Error(codes.InvalidArgument, msgFirstNotStart)
	}
	def := start.GetWorkflowDefinition()
	if def == "" {
		// Newer clients name the flow by flowConfigId instead.
		def = start.GetFlowConfigId()
	}
	// Client input goes into status texts and logs: keep it short.
	def = bounded(def, 100)
	if len(start.GetWorkflowID()) > 40 {
		return status.Error(codes.InvalidArgument, "workflowID is too long")
	}
	if !requireExecuteScope(claimsFrom(ctx), def) {
		return status.Error(codes.PermissionDenied, msgUnauthorizedExec+def)
	}
	f, ok := s.o.Flows[def]
	if start.GetFlowConfig() != nil {
		// An inline flowConfig wins over the definition, as in GitLab's registry.
		f, ok = s.o.InlineFlow, s.o.InlineFlow != nil
		if !ok {
			return status.Error(codes.InvalidArgument, "Inline flowConfig is not supported by this Agent Platform service")
		}
	}
	if !ok {
		return status.Errorf(codes.InvalidArgument, "Unsupported workflow definition %q: this Agent Platform service runs %s", def, strings.Join(s.flowNames(), ", "))
	}
	caller, err := s.callerFrom(ctx)
	if err != nil {
		return err
	}
	ss := &session{
		svc: s, stream: stream, start: start, caller: caller,
		touch:   make(chan struct{}, 1),
		pending: make(map[string]chan *contract.ActionResponse),
	}
	ss.ctx, ss.cancel = context.WithCancelCause(model.WithCall(ctx, receiptCall(ctx, def, start.GetWorkflowID(), caller)))
	defer ss.cancel(nil)
	if !s.register(ss) {
		return status.Error(codes.Unavailable, msgDraining)
	}
	defer s.unregister(ss)
	s.o.Metrics.SessionStarted()
	s.log.Info("agent platform: session started", "workflow_id", start.GetWorkflowID(), "definition", def)
	*started = true
	go ss.receive()
	go ss.watchIdle()

	outcome, err := f.Run(ss.ctx, ss)
	if err == nil {
		s.log.Info("agent platform: session ended", "workflow_id", start.GetWorkflowID(), "definition", def, "outcome", string(outcome))
		return nil // OK: "workflow execution success"
	}
	if c := context.Cause(ss.ctx); c != nil && !errors.Is(err, flow.ErrActionTooLarge) {
		err = c
	}
	return ss.endStatus(err)
}

// endStatus maps how a session ended to GitLab's status table (spec §3.6).
func (ss *session) endStatus(err error) error {
	log := ss.svc.log.With("workflow_id", ss.start.GetWorkflowID())
	var st *stopped
	var ce *flow.ClientError
	switch {
	case errors.As(err, &st):
		ss.reportStopped(st.reason)
		log.Info("agent platform: session stopped", "reason", st.reason)
		if st.reason == stopServerShutdown || st.reason == stopWorkhorseShutdown {
			return status.Error(codes.Unavailable, "workflow execution interrupted: "+st.reason)
		}
		return nil // OK: "workflow execution stopped: <reason>"
	case errors.Is(err, flow.ErrActionTooLarge):
		log.Warn("agent platform: outgoing action too large")
		return status.Error(codes.ResourceExhausted, msgTooLarge)
	case errors.Is(err, errIdle):
		log.Info("agent platform: session idle, ended", "idle_timeout", ss.svc.o.IdleTimeout)
		return status.Errorf(codes.DeadlineExceeded, "session idle for %s", ss.svc.o.IdleTimeout)
	case errors.Is(err, errPeerGone), errors.Is(err, context.Canceled):
		log.Info("agent platform: client went away")
		return status.Error(codes.Canceled, msgCancelled)
	case errors.As(err, &ce):
		return status.Error(codes.InvalidArgument, ce.Message)
	case status.Code(err) != codes.Unknown:
		return err
	default:
		// Flows keep prompt text and tool payloads out of their errors.
		log.Error("agent platform: workflow failed", "error", err)
		return status.Error(codes.Internal, "workflow execution failure: "+err.Error())
	}
}

func (s *Service) recvFirst(ctx context.Context, stream contract.DuoWorkflow_ExecuteWorkflowServer) (*contract.ClientEvent, error) {
	type result struct {
		ev  *contract.ClientEvent
		err error
	}
	ch := make(chan result, 1)
	go func() {
		ev, err := stream.Recv()
		ch <- result{ev, err}
	}()
	t := time.NewTimer(s.o.IdleTimeout)
	defer t.Stop()
	select {
	case r := <-ch:
		if r.err == io.EOF {
			return nil, status.Error(codes.InvalidArgument, msgFirstNotStart)
		}
		if r.err != nil {
			return nil, status.Error(codes.Canceled, msgCancelled)
		}
		return r.ev, nil
	case <-t.C:
		return nil, status.Error(codes.InvalidArgument, msgFirstNotStart)
	case <-ctx.Done():
		return nil, status.Error(codes.Canceled, msgCancelled)
	}
}

// receiptCall names, for the receipt of each model call the flow makes,
// the flow, the workflow and the GitLab instance and user it serves.
func receiptCall(ctx context.Context, def, workflowID string, c flow.Caller) model.Call {
	mc := model.Call{Feature: "agent_platform/" + def, Workflow: workflowID, User: c.GlobalUserID}
	if cl := claimsFrom(ctx); cl != nil {
		mc.Instance = cl.InstanceID
	}
	return mc
}

// callerFrom reads and validates the metadata a flow needs.
func (s *Service) callerFrom(ctx context.Context) (flow.Caller, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	c := flow.Caller{
		GitLabVersion:  first(md, "x-gitlab-version"),
		ClientType:     first(md, "x-gitlab-client-type"),
		BillingEnabled: strings.EqualFold(first(md, "x-gitlab-self-hosted-dap-billing-enabled"), "true"),
		GlobalUserID:   first(md, "x-gitlab-global-user-id"),
	}
	if ff := first(md, "x-gitlab-enabled-feature-flags"); ff != "" {
		c.FeatureFlags = strings.Split(ff, ",")
	}
	m, err := ParseModelMetadata(first(md, HeaderModelMetadata))
	if err != nil {
		return c, status.Error(codes.FailedPrecondition, "Agent Platform model: "+err.Error())
	}
	if s.o.Models == nil {
		return c, status.Error(codes.FailedPrecondition, "Agent Platform model: no model is configured on the appliance")
	}
	if c.Model, err = s.o.Models(ctx, m); err != nil {
		return c, status.Error(codes.FailedPrecondition, "Agent Platform model: "+err.Error())
	}
	return c, nil
}

func (s *Service) register(ss *session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return false
	}
	s.sessions[ss] = struct{}{}
	return true
}

func (s *Service) unregister(ss *session) {
	s.mu.Lock()
	delete(s.sessions, ss)
	s.mu.Unlock()
}

// stop cancels the session's flow with a reason (stopWorkflow, half-close,
// shutdown).
func (ss *session) stop(reason string) {
	ss.cancel(&stopped{reason: reason})
}

// receive handles client events until the stream ends.
func (ss *session) receive() {
	for {
		ev, err := ss.stream.Recv()
		if err == io.EOF {
			ss.stop(stopHalfClose)
			return
		}
		if err != nil {
			ss.cancel(errPeerGone)
			return
		}
		select {
		case ss.touch <- struct{}{}:
		default:
		}
		switch e := ev.GetResponse().(type) {
		case *contract.ClientEvent_ActionResponse:
			ss.deliver(e.ActionResponse)
		case *contract.ClientEvent_StopWorkflow:
			ss.stop(e.StopWorkflow.GetReason())
		case *contract.ClientEvent_Heartbeat:
			// Keeps intermediaries' idle timers happy; nothing to do.
		case *contract.ClientEvent_StartRequest:
			ss.svc.log.Warn("agent platform: second startRequest in one session ignored", "workflow_id", ss.start.GetWorkflowID())
		}
	}
}

// watchIdle ends the session when the client sends nothing (not even a
// heartbeat) for IdleTimeout.
func (ss *session) watchIdle() {
	t := time.NewTimer(ss.svc.o.IdleTimeout)
	defer t.Stop()
	for {
		select {
		case <-ss.ctx.Done():
			return
		case <-ss.touch:
			// Go ≥ 1.23 timers: Reset discards a pending expiry, no drain.
			t.Reset(ss.svc.o.IdleTimeout)
		case <-t.C:
			ss.cancel(errIdle)
			return
		}
	}
}

func (ss *session) deliver(r *contract.ActionResponse) {
	ss.mu.Lock()
	id := r.GetRequestID()
	ch, ok := ss.pending[id]
	if !ok && id == "" && len(ss.pending) == 1 {
		// Old clients answer without an id; one outstanding action is
		// unambiguous.
		for k, c := range ss.pending {
			id, ch, ok = k, c, true
		}
	}
	if ok {
		delete(ss.pending, id)
	}
	ss.mu.Unlock()
	if !ok {
		ss.svc.log.Warn("agent platform: answer to an unknown action ignored", "workflow_id", ss.start.GetWorkflowID())
		return
	}
	ch <- r // buffered, one answer per action
}

// Start implements flow.Session.
func (ss *session) Start() *contract.StartWorkflowRequest { return ss.start }

// Caller implements flow.Session.
func (ss *session) Caller() flow.Caller { return ss.caller }

// Do implements flow.Session: send the action and wait for its answer.
func (ss *session) Do(ctx context.Context, a *contract.Action) (*contract.ActionResponse, error) {
	ch, release, err := ss.expect(a)
	if err != nil {
		return nil, err
	}
	defer release()
	sent := time.Now()
	if err := ss.send(ctx, a); err != nil {
		return nil, err
	}
	t := time.NewTimer(ss.svc.o.ActionTimeout)
	defer t.Stop()
	select {
	case r := <-ch:
		ss.svc.o.Metrics.Action(a.Kind(), time.Since(sent))
		return r, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	case <-ss.ctx.Done():
		return nil, context.Cause(ss.ctx)
	case <-t.C:
		return nil, fmt.Errorf("%s action not answered within %s", a.Kind(), ss.svc.o.ActionTimeout)
	}
}

// expect registers a for its answer (giving it a request id if it has
// none); release forgets it.
func (ss *session) expect(a *contract.Action) (ch chan *contract.ActionResponse, release func(), err error) {
	if a.RequestID == "" {
		a.RequestID = uuid.NewString()
	}
	ch = make(chan *contract.ActionResponse, 1)
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if len(ss.pending) >= maxPending {
		return nil, nil, fmt.Errorf("more than %d actions awaiting an answer", maxPending)
	}
	ss.pending[a.RequestID] = ch
	return ch, func() {
		ss.mu.Lock()
		delete(ss.pending, a.RequestID)
		ss.mu.Unlock()
	}, nil
}

// Notify implements flow.Session.
func (ss *session) Notify(ctx context.Context, c *contract.NewCheckpoint) error {
	a := &contract.Action{RequestID: uuid.NewString(), Action: &contract.Action_NewCheckpoint{NewCheckpoint: c}}
	if err := ss.send(ctx, a); err != nil {
		return err
	}
	ss.svc.o.Metrics.Action(a.Kind(), 0)
	return nil
}

// send refuses an action over the message limit (and ends the session, as
// GitLab's service does) and sends the rest.
func (ss *session) send(ctx context.Context, a *contract.Action) error {
	if proto.Size(a) > MaxMessageBytes {
		ss.cancel(flow.ErrActionTooLarge)
		return flow.ErrActionTooLarge
	}
	if err := ctx.Err(); err != nil {
		return context.Cause(ctx)
	}
	if err := ss.ctx.Err(); err != nil {
		return context.Cause(ss.ctx)
	}
	return ss.sendRaw(ctx, a)
}

func (ss *session) sendRaw(ctx context.Context, a *contract.Action) error {
	ss.sendMu.Lock()
	defer ss.sendMu.Unlock()
	if err := ss.stream.Send(a); err != nil {
		ss.cancel(errPeerGone)
		return fmt.Errorf("send %s action: %w", a.Kind(), err)
	}
	return nil
}
