package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/appliance/config"
	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
	"github.com/duo-confidential/duo-confidential/internal/testutil"
)

// haCluster is three replicas of the real binary with shared keys behind
// HAProxy, each with the configuration the Helm chart renders
// (testdata/chart-config.yaml): TLS from shared certificate files, one
// shared gateway signing key, the proxy listener (with /readyz) closed to
// API calls by an inbound token, the admin UI on loopback, a state
// directory per replica.
type haCluster struct {
	t          *testing.T
	dir        string
	sandbox    string // `sandbox --out` directory
	gitlab     *gitlabtest.Issuer
	replicas   []*haReplica
	haproxy    *exec.Cmd
	front      string // HAProxy's https base URL
	agentFront string // HAProxy's Agent Platform address (TCP, TLS end to end)
	client     *http.Client
	caPool     *x509.CertPool
	haDone     chan struct{}
	haLog      testutil.LogBuffer // haproxy's output: its health-check verdicts
	// api is the GitLab API the Agent Platform sessions' tool calls go to
	// (the client, as Workhorse, calls it).
	api *gitlabtest.API
	// workflowIDs numbers the sessions: each has its own workflow id, which
	// the replica that runs it logs.
	workflowIDs atomic.Int64
}

// haReplica is one `serve` process and what it needs to be started again.
type haReplica struct {
	name    string
	config  string
	gateway string // 127.0.0.1:port
	proxy   string
	agent   string // the Agent Platform's gRPC listener
	state   string
	proc    *proc
	past    []*proc // earlier processes of this replica (their logs)
}

// haShutdownDelay outlasts HAProxy's fall (2 × 300 ms): after SIGTERM
// readiness fails and the checks mark the replica down before it stops
// accepting and begins to drain.
const haShutdownDelay = 1500 * time.Millisecond

// Health checks: every 300 ms, down after 2 failures, up after 2 successes.
const (
	haCheckInter = 300 * time.Millisecond
	haFall       = 2
	haRise       = 2
)

func startHACluster(t *testing.T, replicas int) *haCluster {
	t.Helper()
	c := &haCluster{t: t, dir: t.TempDir(), haDone: make(chan struct{})}
	// Paced tokens (2,000/s) keep a code generation (up to 2,048 tokens)
	// streaming for about a second, so restarts meet requests in flight.
	c.sandbox = startSandboxProc(t, "--tokens-per-second", "2000")
	iss, gl := startGitLab(t)
	c.gitlab = iss
	c.api = newSessionAPI()
	c.workflowIDs.Store(5000)
	// One CA for every replica's certificate: the chart's shared local CA.
	ca := testutil.NewCA(t, "ha test CA", 24*time.Hour)
	certPEM, keyPEM := ca.LeafPEM(t, []string{"localhost", "127.0.0.1"}, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	c.caPool = x509.NewCertPool()
	c.caPool.AppendCertsFromPEM(ca.PEM)
	caFile := c.write("ca.pem", ca.PEM, 0o644)
	// The pod's mounted Secrets and ConfigMaps, shared by every replica as
	// a Secret is: root:group 0440 as the kubelet writes them (when this
	// runs as root; else the owner's 0600).
	secretMode := os.FileMode(0o600)
	if os.Geteuid() == 0 {
		secretMode = 0o440
	}
	etc := filepath.Join(c.dir, "etc", "duo-confidential")
	mount := func(rel string, data []byte, mode os.FileMode) string {
		p := filepath.Join(etc, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	certFile := mount("tls/tls.crt", append(append([]byte{}, certPEM...), ca.PEM...), secretMode)
	keyFile := mount("tls/tls.key", keyPEM, secretMode)
	mount("gateway-keys/signing-key.pem", haRSAKey(t), secretMode)
	mount("privatemode/api-key", []byte("unused-in-sandbox-mode\n"), secretMode)
	mount("outbound-ca/ca.pem", gl.CertPEM, 0o644)
	// The configuration the Helm chart renders (the chart's tests keep
	// testdata/chart-config.yaml equal to it), with this machine's paths
	// and loopback addresses.
	chartConfig := string(mustRead(t, filepath.Join("testdata", "chart-config.yaml")))
	for i := 0; i < replicas; i++ {
		r := &haReplica{name: fmt.Sprintf("r%d", i), gateway: freeAddr(t), proxy: freeAddr(t), agent: freeAddr(t), state: filepath.Join(c.dir, fmt.Sprintf("state-%d", i))}
		cfg := chartConfig
		for _, sub := range [][2]string{
			{"/etc/duo-confidential/", etc + "/"},
			{"/var/lib/duo-confidential/data", r.state},
			{"0.0.0.0:5052", r.gateway},
			{"0.0.0.0:8080", r.proxy},
			{"0.0.0.0:50052", r.agent},
			{"127.0.0.1:5053", "127.0.0.1:0"},
			{"https://gitlab.example.com", gl.URL},
		} {
			if !strings.Contains(cfg, sub[0]) {
				t.Fatalf("testdata/chart-config.yaml has no %q any more: adapt this test to the chart", sub[0])
			}
			cfg = strings.ReplaceAll(cfg, sub[0], sub[1])
		}
		r.config = c.write(r.name+".yaml", []byte(cfg), 0o644)
		c.replicas = append(c.replicas, r)
		c.start(r)
	}
	for _, r := range c.replicas {
		c.waitReplicaReady(r)
	}
	c.startHAProxy(caFile, certFile, keyFile)
	for _, r := range c.replicas {
		c.waitServer(r.name, "UP")
	}
	return c
}

// write puts data into the cluster's directory with mode.
func (c *haCluster) write(name string, data []byte, mode os.FileMode) string {
	c.t.Helper()
	p := filepath.Join(c.dir, name)
	if err := os.WriteFile(p, data, mode); err != nil {
		c.t.Fatal(err)
	}
	return p
}

// start runs (or runs again) a replica's serve process.
func (c *haCluster) start(r *haReplica) {
	c.t.Helper()
	if r.proc != nil {
		r.past = append(r.past, r.proc)
	}
	r.proc = startProc(c.t, []string{config.EnvPrefix + "AGENT_PLATFORM_LISTEN=" + r.agent}, "--config", r.config, "serve", "--sandbox", c.sandbox,
		"--drain", "20s", "--shutdown-delay", haShutdownDelay.String())
}

// replicaClient trusts the cluster's CA and names localhost (the
// certificate's name) whatever address it dials.
func (c *haCluster) replicaClient() *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.caPool, ServerName: "localhost"}, MaxIdleConnsPerHost: 16}
	c.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Timeout: procLimit, Transport: tr}
}

// waitReplicaReady waits for the replica's /readyz to answer 200.
func (c *haCluster) waitReplicaReady(r *haReplica) {
	c.t.Helper()
	cl := c.replicaClient()
	r.proc.waitUntil(c.t, r.name+" to be ready", func() bool {
		resp, err := cl.Get("https://" + r.proxy + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// startHAProxy runs Debian's haproxy in the foreground (never the system
// service) in front of the replicas' gateway listeners, checking each
// replica's /readyz on its proxy listener.
func (c *haCluster) startHAProxy(caFile, certFile, keyFile string) {
	c.t.Helper()
	pem := c.write("front.pem", append(mustRead(c.t, certFile), mustRead(c.t, keyFile)...), 0o600)
	front, agentFront := freeAddr(c.t), freeAddr(c.t)
	var servers, agents strings.Builder
	for _, r := range c.replicas {
		host, port, _ := net.SplitHostPort(r.proxy)
		fmt.Fprintf(&servers, "  server %s %s check addr %s port %s\n", r.name, r.gateway, host, port)
		fmt.Fprintf(&agents, "  server %s %s check addr %s port %s\n", r.name, r.agent, host, port)
	}
	cfg := fmt.Sprintf(`global
  maxconn 1024
  log stdout format raw local0 info
  stats socket %[1]s mode 600 level admin
defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  timeout check 1s
  # A request that found a replica gone (refused, reset, closed before any
  # answer) is sent to another one; the body is buffered for that.
  retries 3
  option redispatch 1
  retry-on conn-failure empty-response
frontend gateway
  bind %[2]s ssl crt %[3]s
  http-response set-header X-Served-By %%s
  default_backend replicas
backend replicas
  balance roundrobin
  option httpchk GET /readyz
  http-check expect status 200
  default-server ssl verify required ca-file %[4]s sni str(localhost) check-ssl check-sni localhost inter %[5]dms fall %[6]d rise %[7]d
%[8]s
# The Agent Platform: gRPC (HTTP/2 over TLS) passed through; the same
# /readyz checks decide where new connections go.
frontend agent
  mode tcp
  timeout client 60s
  bind %[9]s
  # One line per connection at its end, naming the replica it went to:
  # the test attributes gRPC calls to replicas by their client port.
  log global
  option tcplog
  default_backend agents
backend agents
  mode tcp
  balance roundrobin
  option httpchk GET /readyz
  http-check expect status 200
  default-server verify required ca-file %[4]s check-ssl check-sni localhost inter %[5]dms fall %[6]d rise %[7]d
%[10]s`, filepath.Join(c.dir, "haproxy.sock"), front, pem, caFile, haCheckInter.Milliseconds(), haFall, haRise, servers.String(), agentFront, agents.String())
	cfgFile := c.write("haproxy.cfg", []byte(cfg), 0o644)
	cmd := exec.Command("haproxy", "-db", "-f", cfgFile)
	cmd.Stdout, cmd.Stderr = &c.haLog, &c.haLog
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("start haproxy: %v", err)
	}
	c.haproxy = cmd
	go func() { _ = cmd.Wait(); close(c.haDone) }()
	c.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.haDone:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-c.haDone
		}
		if c.t.Failed() {
			c.t.Logf("haproxy output:\n%s", c.haLog.String())
		}
	})
	_, port, _ := net.SplitHostPort(front)
	c.front = "https://localhost:" + port
	c.client = c.replicaClient()
	c.agentFront = agentFront
}

// serverStatus asks HAProxy's stats socket for a server's status (UP,
// DOWN, ...).
func (c *haCluster) serverStatus(name string) string {
	conn, err := net.DialTimeout("unix", filepath.Join(c.dir, "haproxy.sock"), time.Second)
	if err != nil {
		return ""
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte("show stat\n")); err != nil {
		return ""
	}
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	for _, line := range strings.Split(b.String(), "\n") {
		f := strings.Split(line, ",")
		if len(f) > 17 && f[0] == "replicas" && f[1] == name {
			return f[17]
		}
	}
	return ""
}

// waitServer waits until HAProxy reports the server's status as exactly
// want ("UP", "DOWN"; not the transitions "UP 1/2", "DOWN 1/2") and
// returns how long that took.
func (c *haCluster) waitServer(name, want string) time.Duration {
	c.t.Helper()
	start := time.Now()
	deadline := start.Add(procLimit)
	for {
		s := c.serverStatus(name)
		if s == want {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("haproxy never reported %s %s (last %q)", name, want, s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// haRSAKey is the shared gateway signing key.
func haRSAKey(t *testing.T) []byte {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
}
