package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
)

// haRequest is one request of the load and how it ended.
type haRequest struct {
	kind       string
	start, end time.Time
	status     int
	servedBy   string // X-Served-By: the HAProxy server name (sessions: the replica's log)
	workflowID string // Agent Platform sessions: their workflow id
	localAddr  string // Agent Platform calls: the client's end of the TCP connection to HAProxy
	err        string // empty when the answer was complete and correct
}

// haLoad runs workers of each kind against the front until stop, each
// request with a fresh GitLab token, and records every request.
type haLoad struct {
	c    *haCluster
	stop chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	reqs []haRequest
}

// The load's HTTP kinds: a code completion (unary JSON), a streamed code
// generation (SSE) and a Duo Chat step (a streamed NDJSON answer); one more
// worker calls the Agent Platform over gRPC (agentWorker).
var haKinds = []struct {
	kind, path, body string
	headers          []string
	check            func(h http.Header, body []byte) error
}{
	{"completion", "/v2/code/completions", `{"current_file":{"file_name":"a.go","content_above_cursor":"func add(a, b int) int {","content_below_cursor":"\n}\n"}}`, nil,
		func(_ http.Header, b []byte) error {
			var r struct {
				Choices []struct {
					Text string `json:"text"`
				} `json:"choices"`
			}
			if json.Unmarshal(b, &r) != nil || len(r.Choices) != 1 || r.Choices[0].Text == "" {
				return fmt.Errorf("no completion in %.200s", b)
			}
			return nil
		}},
	{"sse-generation", "/v4/code/suggestions",
		`{"prompt_components":[{"type":"code_editor_generation","payload":{"file_name":"fib.py","content_above_cursor":"# fibonacci\n","content_below_cursor":"","language_identifier":"python","stream":true,"prompt_enhancer":{"user_instruction":"write fibonacci"}}}],"stream":true}`,
		[]string{"X-Supports-Sse-Streaming", "true"},
		func(h http.Header, b []byte) error {
			s := string(b)
			if !strings.HasPrefix(h.Get("Content-Type"), "text/event-stream") || !strings.Contains(s, "event: stream_start") ||
				!strings.Contains(s, "event: content_chunk") || !strings.Contains(s, "event: stream_end") {
				return fmt.Errorf("incomplete stream: %.300s", s)
			}
			return nil
		}},
	{"chat-stream", "/v2/chat/agent", `{"messages":[{"role":"user","content":"explain what a mutex is"}]}`, nil,
		func(h http.Header, b []byte) error {
			if !strings.HasPrefix(h.Get("Content-Type"), "application/x-ndjson") || !strings.Contains(string(b), `"final_answer_delta"`) ||
				strings.Contains(string(b), `"type":"error"`) {
				return fmt.Errorf("incomplete chat answer: %.300s", b)
			}
			return nil
		}},
}

// startLoad starts perKind workers of every kind. Each worker sends one
// request after another; the whole load is bounded by maxRequests.
func (c *haCluster) startLoad(perKind, maxRequests int) *haLoad {
	l := &haLoad{c: c, stop: make(chan struct{})}
	var sent sync.Mutex
	n := 0
	for _, k := range haKinds {
		for w := 0; w < perKind; w++ {
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				for {
					select {
					case <-l.stop:
						return
					default:
					}
					sent.Lock()
					n++
					over := n > maxRequests
					sent.Unlock()
					if over {
						return
					}
					l.record(c.do(k.kind, k.path, k.body, k.headers, k.check))
					time.Sleep(20 * time.Millisecond) // steady, not flat out
				}
			}()
		}
	}
	l.wg.Add(1)
	go l.agentWorker(maxRequests)
	for range perKind {
		l.wg.Add(1)
		go l.sessionWorker(maxRequests)
	}
	return l
}

func (l *haLoad) record(r haRequest) {
	l.mu.Lock()
	l.reqs = append(l.reqs, r)
	l.mu.Unlock()
}

// finish stops the load, waits for the requests in flight and returns all.
func (l *haLoad) finish() []haRequest {
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]haRequest(nil), l.reqs...)
}

// do sends one request through HAProxy and checks the whole answer.
func (c *haCluster) do(kind, path, body string, headers []string, check func(http.Header, []byte) error) haRequest {
	r := haRequest{kind: kind, start: time.Now()}
	defer func() { r.end = time.Now() }()
	tok, err := c.gitlab.Token(gitlabtest.TokenOptions{})
	if err != nil {
		r.err = err.Error()
		return r
	}
	req, err := http.NewRequest(http.MethodPost, c.front+path, strings.NewReader(body))
	if err != nil {
		r.err = err.Error()
		return r
	}
	req.Header = c.gitlab.Headers(tok, gitlabtest.TokenOptions{})
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := c.client.Do(req)
	if err != nil {
		r.err = err.Error()
		r.end = time.Now()
		return r
	}
	defer resp.Body.Close()
	r.status, r.servedBy = resp.StatusCode, resp.Header.Get("X-Served-By")
	b, err := io.ReadAll(resp.Body)
	r.end = time.Now()
	switch {
	case err != nil:
		r.err = "read: " + err.Error()
	case resp.StatusCode != http.StatusOK:
		r.err = fmt.Sprintf("status %d: %.200s", resp.StatusCode, b)
	default:
		if err := check(resp.Header, b); err != nil {
			r.err = err.Error()
		}
	}
	return r
}

// summary counts requests per kind and replica, for the log.
func summary(reqs []haRequest) string {
	count := map[string]int{}
	for _, r := range reqs {
		count[r.kind+"@"+r.servedBy]++
	}
	return fmt.Sprint(count)
}

// TestHARollingRestartAndKill: three replicas of the real binary with
// shared keys behind HAProxy, under steady load of completions, SSE
// generations, chat streams and Agent Platform calls and sessions (full
// Agentic Chat ExecuteWorkflow sessions with a tool call). Restarting each
// replica in turn (SIGTERM: /readyz fails, in-flight requests, streams and
// sessions finish, then it exits) fails no request and no session; a token
// minted on one replica is accepted by the others; after kill -9 of one
// replica only the requests and sessions it had in flight fail, and once
// HAProxy's health check has marked it down no request is sent to it.
// Needs Debian's haproxy (CI installs it); skips without.
func TestHARollingRestartAndKill(t *testing.T) {
	if _, err := exec.LookPath("haproxy"); err != nil {
		t.Skip("haproxy not installed (apt-get install haproxy)")
	}
	if testing.Short() {
		t.Skip("-short: starts three replicas and HAProxy")
	}
	c := startHACluster(t, 3)

	t.Run("a direct-access token from one replica works on the others", func(t *testing.T) {
		cl := c.replicaClient()
		tok, _ := c.gitlab.Token(gitlabtest.TokenOptions{})
		h := c.gitlab.Headers(tok, gitlabtest.TokenOptions{})
		req, _ := http.NewRequest(http.MethodPost, "https://"+c.replicas[0].gateway+"/v1/code/user_access_token", nil)
		req.Header = h.Clone()
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var minted struct {
			Token string `json:"token"`
		}
		err = json.NewDecoder(resp.Body).Decode(&minted)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || err != nil || minted.Token == "" {
			t.Fatalf("mint on %s: %d %v", c.replicas[0].name, resp.StatusCode, err)
		}
		for _, r := range c.replicas[1:] {
			req, _ := http.NewRequest(http.MethodPost, "https://"+r.gateway+"/v2/code/completions",
				strings.NewReader(`{"current_file":{"file_name":"a.go","content_above_cursor":"func f() {"}}`))
			req.Header = h.Clone()
			req.Header.Set("Authorization", "Bearer "+minted.Token)
			resp, err := cl.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("token minted on %s refused by %s: %d %s", c.replicas[0].name, r.name, resp.StatusCode, b)
			}
		}
	})

	t.Run("rolling restart under load: no failed request", func(t *testing.T) {
		load := c.startLoad(2, 3000)
		time.Sleep(time.Second)
		drainStart := map[string]time.Time{}
		for _, r := range c.replicas {
			drainStart[r.name] = time.Now().Add(haShutdownDelay)
			if err := r.proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			down := c.waitServer(r.name, "DOWN")
			if code := r.proc.wait(t); code != 0 {
				t.Errorf("%s exited %d after SIGTERM\n%s", r.name, code, r.proc.stderr.String())
			}
			t.Logf("%s: marked DOWN by HAProxy %s after SIGTERM, exited cleanly", r.name, down.Round(time.Millisecond))
			// Readiness failed first: the check saw 503, not a closed port.
			for _, line := range strings.Split(c.haLog.String(), "\n") {
				if strings.Contains(line, "replicas/"+r.name+" is DOWN") && !strings.Contains(line, "Layer7 wrong status, code: 503") {
					t.Errorf("%s was taken out by something other than a failing /readyz: %s", r.name, line)
				}
			}
			c.start(r)
			c.waitReplicaReady(r)
			c.waitServer(r.name, "UP")
		}
		time.Sleep(time.Second)
		reqs := load.finish()
		c.grpcReplicas(reqs)
		checkSessions(t, reqs, drainStart)
		failed := 0
		for _, q := range reqs {
			if q.err != "" {
				failed++
				if failed <= 10 {
					t.Errorf("%s via %q failed: %s", q.kind, q.servedBy, q.err)
				}
			}
		}
		t.Logf("rolling restart: %d requests, %d failed; per kind@replica: %s", len(reqs), failed, summary(reqs))
		if len(reqs) < 30 {
			t.Errorf("only %d requests: the load did not run through the restarts", len(reqs))
		}
	})

	t.Run("kill -9: only its in-flight requests fail, then no request goes to it", func(t *testing.T) {
		load := c.startLoad(2, 3000)
		time.Sleep(1500 * time.Millisecond)
		// An Agent Platform session held at its tool call on every replica:
		// the victim's must fail, the others must finish.
		parkedSessions, releaseSessions := c.parkSessions(t)
		// A code generation streaming from some replica: that replica dies
		// mid-stream, so at least this request is in flight at the kill.
		k := haKinds[1]
		tok, _ := c.gitlab.Token(gitlabtest.TokenOptions{})
		req, _ := http.NewRequest(http.MethodPost, c.front+k.path, strings.NewReader(k.body))
		req.Header = c.gitlab.Headers(tok, gitlabtest.TokenOptions{})
		req.Header.Set(k.headers[0], k.headers[1])
		streamStart := time.Now()
		resp, err := c.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var victim *haReplica
		for _, r := range c.replicas {
			if r.name == resp.Header.Get("X-Served-By") {
				victim = r
			}
		}
		if victim == nil {
			t.Fatalf("the stream names no replica: %v", resp.Header)
		}
		killed := time.Now()
		if err := victim.proc.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		streamed := haRequest{kind: k.kind + " (its replica killed)", start: streamStart, end: time.Now(), status: resp.StatusCode, servedBy: victim.name}
		if err != nil {
			streamed.err = err.Error()
		} else if cerr := k.check(resp.Header, body); cerr != nil {
			streamed.err = cerr.Error()
		}
		if streamed.err == "" {
			t.Errorf("the stream from the killed replica %s completed: the kill came too late to test anything", victim.name)
		}
		load.record(streamed)
		for _, r := range releaseSessions() {
			load.record(r)
			if r.servedBy == victim.name && r.err == "" {
				t.Errorf("session %s, held at its tool call on the killed replica %s, completed", r.workflowID, victim.name)
			}
		}
		t.Logf("sessions held at their tool call during the kill: %d on replicas %v", len(parkedSessions), parkedReplicas(parkedSessions))
		detect := c.waitServer(victim.name, "DOWN")
		down := killed.Add(detect)
		time.Sleep(2 * time.Second)
		reqs := load.finish()
		c.grpcReplicas(reqs)
		failed, inFlight := 0, 0
		var failures []string
		for _, q := range reqs {
			// In flight on the victim: sent to it (and not yet answered) when
			// it died, or sent to it over a connection that was still open
			// before the clients and HAProxy could know (gRPC calls on a
			// kept-alive connection); where a call went is unknown only when
			// it never reached a replica.
			wasInFlight := q.end.After(killed) && (q.servedBy == victim.name && q.start.Before(down) ||
				q.servedBy == "" && q.start.Before(killed))
			if wasInFlight {
				inFlight++
			}
			if q.err != "" {
				failed++
				failures = append(failures, q.kind+"@"+q.servedBy)
				if !wasInFlight {
					t.Errorf("%s via %q started %s after the kill failed although it was not in flight on %s: %s",
						q.kind, q.servedBy, q.start.Sub(killed).Round(time.Millisecond), victim.name, q.err)
				}
			}
			if q.servedBy == victim.name && q.start.After(down) {
				t.Errorf("%s started %s after HAProxy marked %s DOWN was served by it", q.kind, q.start.Sub(down), victim.name)
			}
		}
		t.Logf("kill -9 of %s: HAProxy marked it DOWN after %s (check every %s, fall %d); %d requests, %d in flight at the kill, %d failed %v; per kind@replica: %s",
			victim.name, detect.Round(time.Millisecond), haCheckInter, haFall, len(reqs), inFlight, failed, failures, summary(reqs))
	})
}
