package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
	"github.com/duo-confidential/duo-confidential/internal/testutil"
	"github.com/duo-confidential/duo-confidential/proxy/sandbox"
)

// haCluster is three replicas of the real binary with shared keys behind
// HAProxy, configured the way the Helm chart configures pods: TLS from
// shared certificate files, one shared gateway signing key, the proxy
// listener (with /readyz) closed to API calls by an inbound token, the
// admin UI on loopback, a state directory per replica.
type haCluster struct {
	t        *testing.T
	dir      string
	sandbox  string // `sandbox --out` directory
	gitlab   *gitlabtest.Issuer
	replicas []*haReplica
	haproxy  *exec.Cmd
	front    string // HAProxy's https base URL
	client   *http.Client
	caPool   *x509.CertPool
	haDone   chan struct{}
	haLog    testutil.LogBuffer // haproxy's output: its health-check verdicts
}

// haReplica is one `serve` process and what it needs to be started again.
type haReplica struct {
	name    string
	config  string
	gateway string // 127.0.0.1:port
	proxy   string
	state   string
	proc    *proc
}

// Health checks: every 300 ms, down after 2 failures, up after 2 successes.
const (
	haCheckInter = 300 * time.Millisecond
	haFall       = 2
	haRise       = 2
)

func startHACluster(t *testing.T, replicas int) *haCluster {
	t.Helper()
	c := &haCluster{t: t, dir: t.TempDir(), haDone: make(chan struct{})}
	// Paced tokens (2,000/s) keep a code generation (up to 2,048 tokens) streaming for about a second, so restarts meet
	// requests in flight.
	c.sandbox = startSandboxProc(t, "--tokens-per-second", "2000")
	iss, gl := startGitLab(t)
	c.gitlab = iss
	gitlabCA := c.write("gitlab-ca.pem", gl.CertPEM, 0o644)
	// One CA for every replica's certificate: the chart's shared local CA.
	ca := testutil.NewCA(t, "ha test CA", 24*time.Hour)
	caPEM := ca.PEM
	certPEM, keyPEM := ca.LeafPEM(t, []string{"localhost", "127.0.0.1"}, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	c.caPool = x509.NewCertPool()
	c.caPool.AppendCertsFromPEM(caPEM)
	caFile := c.write("ca.pem", caPEM, 0o644)
	certFile := c.write("tls.crt", append(append([]byte{}, certPEM...), caPEM...), 0o644)
	keyFile := c.write("tls.key", keyPEM, 0o600)
	signingKey := c.write("signing-key.pem", haRSAKey(t), 0o600)
	token := sha256.Sum256([]byte("ha-test-proxy-token"))
	for i := 0; i < replicas; i++ {
		r := &haReplica{name: fmt.Sprintf("r%d", i), gateway: freeAddr(t), proxy: freeAddr(t), state: filepath.Join(c.dir, fmt.Sprintf("state-%d", i))}
		// The keys the chart's ConfigMap renders, with loopback addresses.
		r.config = c.write(r.name+".yaml", fmt.Appendf(nil, `state_dir: %s
log:
  level: info
  format: json
outbound:
  ca_bundle: %s
proxy:
  listen: %s
  inbound_token_sha256: [%s]
gateway:
  listen: %s
  gitlab_url: %s
  models:
    default: %s
    code_completions: %s
  completion_format: suffix
  signing_key_file: %s
tls:
  source: files
  files:
    cert: %s
    key: %s
admin:
  listen: 127.0.0.1:0
  metrics_auth: token
`, r.state, gitlabCA, r.proxy, hex.EncodeToString(token[:]), r.gateway, gl.URL, sandbox.ModelChat, sandbox.ModelCode, signingKey, certFile, keyFile), 0o644)
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
	// The shutdown delay outlasts HAProxy's fall (2 × 300 ms): readiness
	// fails and the checks mark the replica down before it stops accepting.
	r.proc = startProc(c.t, nil, "--config", r.config, "serve", "--sandbox", c.sandbox, "--drain", "20s", "--shutdown-delay", "1500ms")
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
	front := freeAddr(c.t)
	var servers strings.Builder
	for _, r := range c.replicas {
		host, port, _ := net.SplitHostPort(r.proxy)
		fmt.Fprintf(&servers, "  server %s %s check addr %s port %s\n", r.name, r.gateway, host, port)
	}
	cfg := fmt.Sprintf(`global
  maxconn 1024
  stats socket %s mode 600 level admin
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
  bind %s ssl crt %s
  http-response set-header X-Served-By %%s
  default_backend replicas
backend replicas
  balance roundrobin
  option httpchk GET /readyz
  http-check expect status 200
  default-server ssl verify required ca-file %s sni str(localhost) check-ssl check-sni localhost inter %dms fall %d rise %d
%s`, filepath.Join(c.dir, "haproxy.sock"), front, pem, caFile, haCheckInter.Milliseconds(), haFall, haRise, servers.String())
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
