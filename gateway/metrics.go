package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/prompts"
)

// Metrics receives the gateway's per-request observations. Route is a
// route name of the fixed table ("code_completions", "chat_agent", …, or
// "unknown"), prompt the known prompt id of /v1/prompts routes ("" on other
// routes, "unknown" for an id the gateway does not serve), so label
// cardinality stays bounded. Options.Metrics nil records nothing.
type Metrics interface {
	// ObserveRequest records one finished request and the time until its
	// answer was complete (for a stream: its end).
	ObserveRequest(route, prompt string, status int, total time.Duration)
	// StreamStarted and StreamEnded bracket one streamed answer.
	StreamStarted(route string)
	StreamEnded(route string)
}

// labels returns the metric labels of a call.
func (c *call) labels(rt *route) (route, prompt string) {
	if rt == nil {
		return "unknown", ""
	}
	if rt.name != "prompts" && rt.name != "prompts_v2" {
		return rt.name, ""
	}
	f, err := prompts.LookupFeature(strings.Trim(c.suffix, "/"))
	if err != nil {
		return rt.name, "unknown"
	}
	return rt.name, string(f)
}

// observe records a call whose answer is complete when the handler returns.
func (s *Server) observe(c *call, rt *route) {
	if s.o.Metrics == nil || c.streamed {
		return
	}
	route, prompt := c.labels(rt)
	s.o.Metrics.ObserveRequest(route, prompt, c.ctx.Response.StatusCode(), s.o.Now().Sub(c.started))
}

// streamObserver marks c as streamed and returns what the stream writer
// calls when the stream ends.
func (c *call) streamObserver() func() {
	c.streamed = true
	m := c.s.o.Metrics
	if m == nil {
		return func() {}
	}
	route, prompt := c.labels(c.route)
	status, started, now := c.ctx.Response.StatusCode(), c.started, c.s.o.Now
	m.StreamStarted(route)
	return func() {
		m.StreamEnded(route)
		m.ObserveRequest(route, prompt, status, now().Sub(started))
	}
}

// TestConnection runs what GitLab's "Test connection" button runs, minus
// GitLab's token: the model_configuration/check prompt against the model
// the gateway picks for it, within the check timeout. It returns the model
// called and how long the answer took.
func (s *Server) TestConnection(ctx context.Context) (string, time.Duration, error) {
	p, err := prompts.Render(string(prompts.ModelConfigurationCheck), map[string]any{})
	if err != nil {
		return "", 0, fmt.Errorf("render the check prompt: %w", err)
	}
	modelID, err := s.o.Models.Pick(prompts.ModelConfigurationCheck, ModelMetadata{})
	if err != nil {
		return "", 0, err
	}
	ctx, cancel := context.WithTimeoutCause(ctx, s.o.Timeouts.Check, errDeadline)
	defer cancel()
	start := s.o.Now()
	_, err = s.o.Model.Chat(ctx, promptChatRequest(modelID, p))
	took := s.o.Now().Sub(start)
	if err != nil && errors.Is(context.Cause(ctx), errDeadline) {
		err = fmt.Errorf("no answer within gateway.timeouts.check (%s; GitLab waits 3 s): %w", s.o.Timeouts.Check, err)
	}
	return modelID, took, err
}
