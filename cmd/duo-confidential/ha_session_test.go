package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/workhorse"
	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
	"github.com/duo-confidential/duo-confidential/proxy/sandbox"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// haSessionGoal makes the sandbox's chat agent call one read tool
// (get_issue: a runHTTPRequest the client answers from the fake GitLab)
// and then answer; the session ends INPUT_REQUIRED.
const haSessionGoal = "call get_issue for issue 1"

// haToolDelay is how long the fake GitLab takes to answer the session's
// tool call: long enough that a replica's drain begins while sessions run
// on it.
const haToolDelay = 200 * time.Millisecond

// haSessionKind is the load's Agent Platform session kind.
const haSessionKind = "agent-session"

// dialAgent opens a gRPC connection to the Agent Platform through HAProxy
// (one TCP connection, passed through to one replica until that replica
// sends GOAWAY or goes away). Calls wait for a connection rather than fail
// fast, as Workhorse does while a load balancer moves it.
func (c *haCluster) dialAgent() (*grpc.ClientConn, error) {
	return grpc.NewClient(c.agentFront,
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: c.caPool, ServerName: "localhost"})),
		grpc.WithDefaultCallOptions(grpc.WaitForReady(true), grpc.MaxCallRecvMsgSize(agentplatform.MaxMessageBytes)),
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoke grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return invoke(ctx, method, req, reply, cc, peerOption(ctx, opts)...)
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, stream grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			return stream(ctx, desc, cc, method, peerOption(ctx, opts)...)
		}))
}

// peerKey carries the *peer.Peer an RPC's connection is recorded in.
type peerKey struct{}

// recordPeer returns ctx whose RPCs through dialAgent's connection record
// their connection's addresses in p (the local one names the TCP
// connection to HAProxy, whose log names the replica behind it).
func recordPeer(ctx context.Context, p *peer.Peer) context.Context {
	return context.WithValue(ctx, peerKey{}, p)
}

func peerOption(ctx context.Context, opts []grpc.CallOption) []grpc.CallOption {
	if p, ok := ctx.Value(peerKey{}).(*peer.Peer); ok {
		return append(opts, grpc.Peer(p))
	}
	return opts
}

// localAddr is the recorded local address, "" when the RPC never had a
// connection.
func localAddr(p *peer.Peer) string {
	if p.LocalAddr == nil {
		return ""
	}
	return p.LocalAddr.String()
}

// agentConnections maps the local address of each client connection
// HAProxy's agent frontend has logged (at its end, option tcplog) to the
// replica it was passed to.
func (c *haCluster) agentConnections() map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(c.haLog.String(), "\n") {
		f := strings.Fields(line)
		for i := 2; i+1 < len(f); i++ {
			if f[i] == "agent" && strings.HasPrefix(f[i+1], "agents/") {
				m[f[0]] = strings.TrimPrefix(f[i+1], "agents/")
				break
			}
		}
	}
	return m
}

// sessionWorker plays full Agentic Chat sessions (ExecuteWorkflow: the
// startRequest with a goal, the tool call answered from the fake GitLab,
// the streamed answer) one after another over one connection until stop.
func (l *haLoad) sessionWorker(maxSessions int) {
	defer l.wg.Done()
	conn, err := l.c.dialAgent()
	if err != nil {
		l.record(haRequest{kind: haSessionKind, start: time.Now(), end: time.Now(), err: err.Error()})
		return
	}
	defer conn.Close()
	client := contract.NewDuoWorkflowClient(conn)
	for i := 0; i < maxSessions; i++ {
		select {
		case <-l.stop:
			return
		default:
		}
		l.record(l.c.runSession(client, delayed{l.c.api, haToolDelay}, l.c.nextWorkflowID()))
		time.Sleep(20 * time.Millisecond)
	}
}

// runSession plays one Agentic Chat session with a new workflow id and
// checks that it ended as expected: INPUT_REQUIRED after a successful
// tool call and the agent's answer. servedBy is filled in later from the
// replicas' logs (grpcReplicas): a TCP pass-through adds no header.
func (c *haCluster) runSession(client contract.DuoWorkflowClient, gitlab http.Handler, id string) haRequest {
	r := haRequest{kind: haSessionKind, workflowID: id, start: time.Now()}
	md, err := c.sessionMD()
	if err != nil {
		r.err, r.end = err.Error(), time.Now()
		return r
	}
	var p peer.Peer
	ctx, cancel := context.WithTimeout(recordPeer(context.Background(), &p), 30*time.Second)
	defer cancel()
	var out strings.Builder
	st, err := workhorse.RunChat(ctx, client, workhorse.Session{Metadata: md, GitLab: gitlab, OAuthToken: c.api.Token}, id, haSessionGoal, false, &out)
	r.end, r.localAddr = time.Now(), localAddr(&p)
	switch {
	case err != nil:
		r.err = "ExecuteWorkflow: " + err.Error()
	case st != "INPUT_REQUIRED":
		r.err = "ended " + st + ", want INPUT_REQUIRED"
	case !strings.Contains(out.String(), "[tool] get_issue issue_iid=1 → success") || !strings.Contains(out.String(), "Duo: Sandbox answer from the tool results"):
		r.err = fmt.Sprintf("no tool round trip or answer: %.300s", out.String())
	}
	return r
}

// nextWorkflowID is a workflow id no session of the test had.
func (c *haCluster) nextWorkflowID() string { return fmt.Sprint(c.workflowIDs.Add(1)) }

// sessionMD is what Rails sends with ExecuteWorkflow: agentMD, the
// selected model and the user's OAuth token for the session's GitLab API
// calls.
func (c *haCluster) sessionMD() (metadata.MD, error) {
	md, err := c.agentMD()
	if err != nil {
		return nil, err
	}
	md.Set(agentplatform.HeaderModelMetadata, `{"provider":"openai","name":"general","api_key":"placeholder","identifier":"custom_openai/`+sandbox.ModelChat+`"}`)
	md.Set("x-gitlab-oauth-token", c.api.Token)
	return md, nil
}

// newSessionAPI is the fake GitLab the sessions' tool calls go to.
func newSessionAPI() *gitlabtest.API { return gitlabtest.NewAPI("oauth-" + rand.Text()) }

// delayed answers like h, after d.
type delayed struct {
	h http.Handler
	d time.Duration
}

func (h delayed) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	time.Sleep(h.d)
	h.h.ServeHTTP(w, r)
}

// parked answers like h once release is closed; arrived is closed when
// the first request came in (the session is then running on a replica,
// waiting for its tool call's answer).
type parked struct {
	h       http.Handler
	arrived chan struct{}
	once    atomic.Bool
	release chan struct{}
}

func (p *parked) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.once.CompareAndSwap(false, true) {
		close(p.arrived)
	}
	<-p.release
	p.h.ServeHTTP(w, r)
}

// sessionStarts maps each workflow id to the replica whose log says it
// started that session (the last one, when a workflow ran twice).
func (c *haCluster) sessionStarts() map[string]string {
	m := map[string]string{}
	for _, r := range c.replicas {
		for _, p := range append(append([]*proc(nil), r.past...), r.proc) {
			for _, line := range strings.Split(p.stderr.String(), "\n") {
				if !strings.Contains(line, "agent platform: session started") {
					continue
				}
				if _, rest, ok := strings.Cut(line, `"workflow_id":"`); ok {
					id, _, _ := strings.Cut(rest, `"`)
					m[id] = r.name
				}
			}
		}
	}
	return m
}

// grpcReplicas fills in servedBy of the Agent Platform calls and sessions
// among reqs, which a TCP pass-through cannot mark with a header: a
// session's replica is the one that logged its start; otherwise (a call,
// or a session that never started) the replica HAProxy passed the call's
// connection to, from HAProxy's log of that connection, which it writes
// when the connection ends (so wait for it a moment).
func (c *haCluster) grpcReplicas(reqs []haRequest) {
	starts := c.sessionStarts()
	var unknown []*haRequest
	for i := range reqs {
		q := &reqs[i]
		if q.kind == haSessionKind && starts[q.workflowID] != "" {
			q.servedBy = starts[q.workflowID]
		} else if q.servedBy == "" && q.localAddr != "" {
			unknown = append(unknown, q)
		}
	}
	for deadline := time.Now().Add(3 * time.Second); len(unknown) > 0; time.Sleep(50 * time.Millisecond) {
		conns := c.agentConnections()
		rest := unknown[:0]
		for _, q := range unknown {
			if q.servedBy = conns[q.localAddr]; q.servedBy == "" {
				rest = append(rest, q)
			}
		}
		if unknown = rest; time.Now().After(deadline) {
			break
		}
	}
}

// checkSessions checks the Agent Platform sessions of a rolling restart:
// each ran on a replica that logged it, several replicas ran them, and at
// least one was running on a replica when that replica began to drain
// (drainStart) — so the drain, not luck, let it finish.
func checkSessions(t *testing.T, reqs []haRequest, drainStart map[string]time.Time) {
	t.Helper()
	sessions, spanned := 0, 0
	replicas := map[string]bool{}
	for _, q := range reqs {
		if q.kind != haSessionKind {
			continue
		}
		sessions++
		if q.servedBy == "" {
			if q.err == "" {
				t.Errorf("session %s completed but no replica logged its start", q.workflowID)
			}
			continue
		}
		replicas[q.servedBy] = true
		if d, ok := drainStart[q.servedBy]; ok && q.start.Before(d) && q.end.After(d) {
			spanned++
		}
	}
	t.Logf("Agent Platform sessions: %d on %d replicas, %d running on their replica when its drain began", sessions, len(replicas), spanned)
	if sessions < 6 {
		t.Errorf("only %d Agent Platform sessions: the load did not run them through the restarts", sessions)
	}
	if len(replicas) < 2 {
		t.Errorf("the sessions ran on %d replica(s): they did not move as the replicas restarted", len(replicas))
	}
	if spanned == 0 {
		t.Error("no session was running on a replica when its drain began: the restarts did not test draining sessions")
	}
}

// parkedSession is a session held at its tool call on a known replica.
type parkedSession struct {
	id, replica string
	gitlab      *parked
	result      chan haRequest
}

// parkSessions starts sessions, each on a new connection (HAProxy sends
// each new connection to the next replica), and holds each at its tool
// call, until one is running on every replica. release lets them go on.
func (c *haCluster) parkSessions(t *testing.T) (sessions []*parkedSession, release func() []haRequest) {
	t.Helper()
	on := map[string]bool{}
	for i := 0; i < 3*len(c.replicas) && len(on) < len(c.replicas); i++ {
		conn, err := c.dialAgent()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		s := &parkedSession{id: c.nextWorkflowID(), result: make(chan haRequest, 1),
			gitlab: &parked{h: c.api, arrived: make(chan struct{}), release: make(chan struct{})}}
		go func() { s.result <- c.runSession(contract.NewDuoWorkflowClient(conn), s.gitlab, s.id) }()
		select {
		case <-s.gitlab.arrived:
		case r := <-s.result:
			t.Fatalf("session %s ended before its tool call: %s", s.id, r.err)
		case <-time.After(procLimit):
			t.Fatalf("session %s never made its tool call", s.id)
		}
		for deadline := time.Now().Add(5 * time.Second); s.replica == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			s.replica = c.sessionStarts()[s.id]
		}
		if s.replica == "" {
			t.Fatalf("session %s is running but no replica logged its start", s.id)
		}
		on[s.replica] = true
		sessions = append(sessions, s)
	}
	if len(on) < len(c.replicas) {
		t.Fatalf("%d new connections reached only %v", 3*len(c.replicas), on)
	}
	return sessions, func() []haRequest {
		var reqs []haRequest
		for _, s := range sessions {
			close(s.gitlab.release)
			r := <-s.result
			r.kind, r.servedBy = haSessionKind+" (parked)", s.replica
			reqs = append(reqs, r)
		}
		return reqs
	}
}

// parkedReplicas lists where the parked sessions ran.
func parkedReplicas(ps []*parkedSession) []string {
	var names []string
	for _, p := range ps {
		names = append(names, p.id+"@"+p.replica)
	}
	return names
}
