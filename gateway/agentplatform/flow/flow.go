package flow

import (
	"context"
	"errors"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
)

// Flow runs one workflow definition (e.g. "chat") for one session.
type Flow interface {
	// Run drives the session until the workflow reaches a state where the
	// stream may end (finished, waiting for input or approval) and says
	// which. A returned error ends the RPC with INTERNAL unless it is one
	// of this package's sentinel errors or ctx's error.
	Run(ctx context.Context, s Session) (Outcome, error)
	// Tools lists the function specs this flow can offer a model, for
	// ListTools (OpenAI shape: {"type":"function","function":{…}}).
	Tools() []map[string]any
}

// Session is what a flow may do with the client on the other end.
type Session interface {
	// Start is the startRequest that opened the session; never nil.
	Start() *contract.StartWorkflowRequest
	// Caller describes who called and what GitLab told us about them.
	Caller() Caller
	// Do sends an action and waits for the client's answer. It fails with
	// ErrActionTooLarge for an action over the message limit, and with
	// ctx's error when the session ends first.
	Do(ctx context.Context, a *contract.Action) (*contract.ActionResponse, error)
	// Notify sends a newCheckpoint, which the client does not answer.
	Notify(ctx context.Context, c *contract.NewCheckpoint) error
}

// Caller is the request metadata a flow needs, already validated.
type Caller struct {
	// GitLabVersion is x-gitlab-version ("18.8.1"); selects query shapes.
	GitLabVersion string
	// ClientType is x-gitlab-client-type (e.g. "browser", "gitlab-rails").
	ClientType string
	// Model is the model GitLab selected, validated against ours.
	Model Model
	// BillingEnabled is x-gitlab-self-hosted-dap-billing-enabled: emit
	// trackLlmCallForSelfHosted before each model call.
	BillingEnabled bool
	// FeatureFlags are x-gitlab-enabled-feature-flags.
	FeatureFlags []string
	// GlobalUserID is x-gitlab-global-user-id (an opaque id).
	GlobalUserID string
}

// Model is the appliance model a session uses.
type Model struct {
	// ID is the model name sent to the proxy.
	ID string
	// ContextWindow is the model's context window in tokens.
	ContextWindow int
}

// Outcome is how a flow left the workflow; each maps to a Rails status
// event and ends the RPC with OK.
type Outcome string

// Outcomes the session engine knows (Rails' status events).
const (
	Finished             Outcome = "finish"
	InputRequired        Outcome = "require_input"
	ToolApprovalRequired Outcome = "require_tool_call_approval"
	Stopped              Outcome = "stop"
	Paused               Outcome = "pause"
)

// Sentinel errors a flow or the engine may return.
var (
	// ErrActionTooLarge: an outgoing action exceeded the message limit.
	ErrActionTooLarge = errors.New("outgoing message too large")
	// ErrStopped: the client sent stopWorkflow or half-closed.
	ErrStopped = errors.New("workflow stopped by the client")
)

// ClientError is a failure the caller caused (bad start request, unknown
// tool approval): the RPC ends with INVALID_ARGUMENT and Message.
type ClientError struct{ Message string }

// Error implements error.
func (e *ClientError) Error() string { return e.Message }
