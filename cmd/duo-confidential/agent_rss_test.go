package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/agentplatform/contract"
	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
)

// rssMeasureEnv turns on TestAgentPlatformIdleSessionRSS, a measurement
// for docs/benchmarks.md rather than a check (it asserts no figures).
const rssMeasureEnv = "DUO_CONFIDENTIAL_MEASURE_RSS"

// TestAgentPlatformIdleSessionRSS starts `serve` as its own process, opens
// 1,000 Agentic Chat sessions that each wait for Workhorse's answer to their
// first action, and reports the process's VmRSS growth per session against
// the idle baseline measured in the same run. Run with
// DUO_CONFIDENTIAL_MEASURE_RSS=1 (see docs/benchmarks.md).
func TestAgentPlatformIdleSessionRSS(t *testing.T) {
	if os.Getenv(rssMeasureEnv) == "" {
		t.Skip("a measurement; set " + rssMeasureEnv + "=1 to run it")
	}
	const sessions, conns = 1000, 10
	e := startListenersEnv(t, "", nil)
	agentAddr := e.agentAddr(t)
	pid := e.serve.cmd.Process.Pid
	tlsCfg := &tls.Config{RootCAs: e.roots, ServerName: "localhost"}
	api := gitlabtest.NewAPI("oauth-" + rand.Text())
	md := e.agentMD(t, "duo_chat", "duo_agent_platform")
	md.Set("x-gitlab-oauth-token", api.Token)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	e.waitAgentPlatform(ctx, t, agentAddr, md)
	clients := make([]contract.DuoWorkflowClient, conns)
	for i := range clients {
		conn, err := grpc.NewClient(agentAddr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		clients[i] = contract.NewDuoWorkflowClient(conn)
	}
	// The baseline: every connection up and one session opened and closed,
	// so the TLS, gRPC and JWT paths have run once.
	open := func(i int) contract.DuoWorkflow_ExecuteWorkflowClient {
		st, err := clients[i%conns].ExecuteWorkflow(metadata.NewOutgoingContext(ctx, md))
		if err != nil {
			t.Fatal(err)
		}
		start := &contract.StartWorkflowRequest{WorkflowID: strconv.Itoa(5000 + i), WorkflowDefinition: "chat", Goal: "call get_issue for issue 1"}
		if err := st.Send(&contract.ClientEvent{Response: &contract.ClientEvent_StartRequest{StartRequest: start}}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Recv(); err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
		return st
	}
	for i := range conns {
		st := open(sessions + i)
		_ = st.CloseSend()
	}
	time.Sleep(2 * time.Second)
	base := vmRSS(t, pid)
	streams := make([]contract.DuoWorkflow_ExecuteWorkflowClient, 0, sessions)
	for i := range sessions {
		streams = append(streams, open(i))
	}
	time.Sleep(2 * time.Second)
	loaded := vmRSS(t, pid)
	per := (loaded - base) / sessions
	t.Logf("serve VmRSS: idle baseline %d KiB; with %d idle sessions %d KiB (%.1f MB); growth %d B/session (%.1f KiB)",
		base>>10, sessions, loaded>>10, float64(loaded)/1e6, per, float64(per)/1024)
	for _, st := range streams {
		_ = st.CloseSend()
	}
}

// vmRSS reads a process's resident set size in bytes from /proc.
func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}
