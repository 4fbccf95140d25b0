package agentplatform

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/gitlabapi"
)

// stopReportTimeout bounds each of the best-effort steps after a stop: the
// client may be gone or never answer.
const stopReportTimeout = 2 * time.Second

// reportStopped tells the client and GitLab that the workflow stopped:
// the STOPPED checkpoint GitLab's service streams, then, when the client
// itself asked to stop, the workflow's `stop` status event (PATCH
// …/workflows/:id through the executor, as GitLab's service does). A
// half-closed client can no longer answer, and a shutdown (Workhorse's or
// ours) leaves the workflow resumable, so neither is reported to GitLab.
func (ss *session) reportStopped(reason string) {
	ss.notifyStopped()
	switch reason {
	case stopHalfClose, stopServerShutdown, stopWorkhorseShutdown:
		return
	}
	id := ss.start.GetWorkflowID()
	if _, err := strconv.ParseUint(id, 10, 64); err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ss.ctx), stopReportTimeout)
	defer cancel()
	if err := gitlabapi.New(detachedDoer{ss}).StatusEvent(ctx, id, gitlabapi.EventStop); err != nil {
		ss.svc.log.Warn("agent platform: could not mark the stopped workflow in GitLab", "workflow_id", id, "error", err)
	}
}

// notifyStopped sends the STOPPED checkpoint GitLab's service sends on a
// stop, best effort (the client may be gone).
func (ss *session) notifyStopped() {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ss.ctx), stopReportTimeout)
	defer cancel()
	_ = ss.sendRaw(ctx, &contract.Action{Action: &contract.Action_NewCheckpoint{NewCheckpoint: &contract.NewCheckpoint{
		Status: "STOPPED", Goal: ss.start.GetGoal(), Checkpoint: `{"channel_values":{"ui_chat_log":[]}}`,
	}}})
}

// detachedDoer sends actions of a session whose flow has already been
// cancelled: it waits for the answer until its own ctx ends, not the
// session's.
type detachedDoer struct{ ss *session }

// Do implements gitlabapi.Doer.
func (d detachedDoer) Do(ctx context.Context, a *contract.Action) (*contract.ActionResponse, error) {
	ss := d.ss
	ch, release, err := ss.expect(a)
	if err != nil {
		return nil, err
	}
	defer release()
	if err := ss.sendRaw(ctx, a); err != nil {
		return nil, err
	}
	select {
	case r := <-ch:
		return r, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%s action after stop: %w", a.Kind(), context.Cause(ctx))
	}
}
