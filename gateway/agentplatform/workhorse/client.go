package workhorse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"google.golang.org/grpc/metadata"
)

// BodyLimit is Workhorse's cap on a relayed response body.
const BodyLimit = 4<<20 - 4096

// Session describes one ExecuteWorkflow run.
type Session struct {
	// Metadata is sent with the RPC (token, GitLab headers, model JSON).
	Metadata metadata.MD
	// Start is the first event.
	Start *contract.StartWorkflowRequest
	// GitLab answers runHTTPRequest (an http.Handler in tests, or a
	// reverse proxy to a GitLab URL); nil answers every request 502.
	GitLab http.Handler
	// OAuthToken is sent as Bearer to GitLab.
	OAuthToken string
	// OnCheckpoint sees every newCheckpoint; an error stops the session
	// with stopWorkflow.
	OnCheckpoint func(*contract.NewCheckpoint) error
	// OnAction sees every action before it is executed (for logs).
	OnAction func(*contract.Action)
	// Execute answers actions other than runHTTPRequest, newCheckpoint and
	// trackLlmCallForSelfHosted; nil answers them with an error text.
	Execute func(*contract.Action) *contract.ActionResponse
}

// Result is how a session ended.
type Result struct {
	// Last is the last newCheckpoint received.
	Last *contract.NewCheckpoint
	// Actions counts actions by kind.
	Actions map[string]int
}

// Run plays the session to its end and returns the RPC's final error (nil
// for OK).
func Run(ctx context.Context, c contract.DuoWorkflowClient, s Session) (Result, error) {
	res := Result{Actions: map[string]int{}}
	st, err := c.ExecuteWorkflow(metadata.NewOutgoingContext(ctx, s.Metadata))
	if err != nil {
		return res, err
	}
	if err := st.Send(&contract.ClientEvent{Response: &contract.ClientEvent_StartRequest{StartRequest: s.Start}}); err != nil {
		return res, sendError(st, err)
	}
	for {
		a, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return res, nil
		}
		if err != nil {
			return res, err
		}
		kind := a.Kind()
		res.Actions[kind]++
		if s.OnAction != nil {
			s.OnAction(a)
		}
		var resp *contract.ActionResponse
		switch x := a.Action.(type) {
		case *contract.Action_NewCheckpoint:
			res.Last = x.NewCheckpoint
			if s.OnCheckpoint != nil {
				if err := s.OnCheckpoint(x.NewCheckpoint); err != nil {
					_ = st.Send(&contract.ClientEvent{Response: &contract.ClientEvent_StopWorkflow{StopWorkflow: &contract.StopWorkflowRequest{Reason: "WORKHORSE_WEBSOCKET_CLOSE_1000"}}})
				}
			}
			continue
		case *contract.Action_RunHTTPRequest:
			resp = s.http(ctx, a.RequestID, x.RunHTTPRequest)
		case *contract.Action_TrackLlmCallForSelfHosted:
			resp = &contract.ActionResponse{RequestID: a.RequestID, ResponseType: &contract.ActionResponse_PlainTextResponse{PlainTextResponse: &contract.PlainTextResponse{Response: "authenticated"}}}
		default:
			if s.Execute != nil {
				resp = s.Execute(a)
			}
			if resp == nil {
				resp = &contract.ActionResponse{ResponseType: &contract.ActionResponse_PlainTextResponse{PlainTextResponse: &contract.PlainTextResponse{Error: kind + " is not supported by this executor"}}}
			}
			resp.RequestID = a.RequestID
		}
		if err := st.Send(&contract.ClientEvent{Response: &contract.ClientEvent_ActionResponse{ActionResponse: resp}}); err != nil {
			return res, sendError(st, err)
		}
	}
}

// sendError is the error of a failed Send: io.EOF means the server ended
// the stream, and its status comes from Recv.
func sendError(st contract.DuoWorkflow_ExecuteWorkflowClient, err error) error {
	if !errors.Is(err, io.EOF) {
		return err
	}
	for {
		if _, rerr := st.Recv(); rerr != nil {
			if errors.Is(rerr, io.EOF) {
				return errors.New("the server ended the session before reading the client's event")
			}
			return rerr
		}
	}
}

// http executes a runHTTPRequest like Workhorse: the user's token, JSON
// content type, body capped (and the cap reported).
func (s Session) http(ctx context.Context, id string, r *contract.RunHTTPRequest) *contract.ActionResponse {
	out := &contract.HttpResponse{Headers: map[string]string{}}
	resp := &contract.ActionResponse{RequestID: id, ResponseType: &contract.ActionResponse_HttpResponse{HttpResponse: out}}
	if s.GitLab == nil {
		out.StatusCode, out.Error = 502, "no GitLab configured"
		return resp
	}
	req, err := http.NewRequestWithContext(ctx, r.GetMethod(), r.GetPath(), strings.NewReader(r.GetBody()))
	if err != nil {
		out.Error = err.Error()
		return resp
	}
	req.Header.Set("Authorization", "Bearer "+s.OAuthToken)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "duo-confidential-agent-client")
	rec := &capped{header: http.Header{}}
	s.GitLab.ServeHTTP(rec, req)
	if rec.status == 0 {
		rec.status = 200
	}
	out.StatusCode = int32(rec.status)
	out.Body = rec.body.String()
	for k, v := range rec.header {
		out.Headers[k] = strings.Join(v, ", ")
	}
	if rec.cut {
		out.Error = fmt.Sprintf("response body exceeded size limit (%d bytes)", BodyLimit)
	}
	return resp
}

// capped is a ResponseWriter keeping at most BodyLimit bytes.
type capped struct {
	header http.Header
	status int
	body   bytes.Buffer
	cut    bool
}

func (c *capped) Header() http.Header { return c.header }
func (c *capped) WriteHeader(s int) {
	if c.status == 0 {
		c.status = s
	}
}
func (c *capped) Write(p []byte) (int, error) {
	room := BodyLimit - c.body.Len()
	if len(p) > room {
		c.cut = true
		c.body.Write(p[:max(room, 0)])
		return max(room, 0), io.ErrShortWrite
	}
	return c.body.Write(p)
}
