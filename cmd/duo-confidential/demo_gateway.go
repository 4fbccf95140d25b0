//go:build !duo_production

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
	"github.com/duo-confidential/duo-confidential/internal/statedir"
)

// demoHeadersFile holds Rails' headers with a fresh demo token, for
// `curl -H @file`; the demo rewrites it before the token expires.
const demoHeadersFile = "gitlab-headers.txt"

// demoCall is one request the demo prints as curl and --check sends.
type demoCall struct {
	what string
	path string
	body string
	// check reports what is wrong with a 200 answer, or "".
	check func(body []byte) string
	// extra headers (besides Rails' headers).
	extra map[string]string
}

// demoCalls are GitLab's three main Duo calls: a code completion, a v4
// streamed code generation and a Duo Chat step.
func demoCalls() []demoCall {
	return []demoCall{
		{
			what: "Code completion, as GitLab's health check and the IDE send it",
			path: "/v2/code/completions",
			body: `{"prompt_version":1,"current_file":{"file_name":"main.go","content_above_cursor":"package main\n\nfunc add(a, b int) int {\n\treturn ","content_below_cursor":"\n}\n"}}`,
			check: func(b []byte) string {
				var r struct {
					Choices []struct {
						Text string `json:"text"`
					} `json:"choices"`
				}
				if json.Unmarshal(b, &r) != nil || len(r.Choices) == 0 || r.Choices[0].Text == "" {
					return "no choices[0].text"
				}
				return ""
			},
		},
		{
			what:  "Code generation, streamed as server-sent events (v4)",
			path:  "/v4/code/suggestions",
			body:  `{"prompt_components":[{"type":"code_editor_generation","payload":{"file_name":"util.py","content_above_cursor":"# return the n-th Fibonacci number\n","content_below_cursor":"","language_identifier":"python","stream":true,"prompt_enhancer":{"user_instruction":"Write a function that returns the n-th Fibonacci number"}}}],"stream":true}`,
			extra: map[string]string{"X-Supports-Sse-Streaming": "true"},
			check: func(b []byte) string {
				for _, ev := range []string{"event: stream_start", "event: content_chunk", "event: stream_end"} {
					if !bytes.Contains(b, []byte(ev)) {
						return "no " + ev
					}
				}
				return ""
			},
		},
		{
			what: "A Duo Chat step (ndjson events, as Rails streams them)",
			path: "/v2/chat/agent",
			body: `{"messages":[{"role":"user","content":"What does a confidential-computing backend protect?"}],"unavailable_resources":["Pipelines","Vulnerabilities"]}`,
			check: func(b []byte) string {
				if !bytes.Contains(b, []byte(`"type":"final_answer_delta"`)) {
					return "no final_answer_delta event"
				}
				return ""
			},
		},
	}
}

// writeDemoHeaders mints a demo token and writes Rails' headers for it.
func writeDemoHeaders(dir string, iss *gitlabtest.Issuer) (string, http.Header, error) {
	tok, err := iss.Token(gitlabtest.TokenOptions{})
	if err != nil {
		return "", nil, err
	}
	h := iss.Headers(tok, gitlabtest.TokenOptions{})
	var b strings.Builder
	names := make([]string, 0, len(h))
	for k := range h {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		fmt.Fprintf(&b, "%s: %s\n", k, h.Get(k))
	}
	p := filepath.Join(dir, demoHeadersFile)
	if err := statedir.WriteFile(p, []byte(b.String()), statedir.SecretMode); err != nil {
		return "", nil, err
	}
	return p, h, nil
}

// refreshDemoHeaders rewrites the header file every 30 minutes (tokens
// live an hour) until ctx ends.
func refreshDemoHeaders(ctx context.Context, dir string, iss *gitlabtest.Issuer) {
	t := time.NewTicker(30 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_, _, _ = writeDemoHeaders(dir, iss)
		}
	}
}

// printDemoGateway prints the curl commands of demoCalls.
func printDemoGateway(out io.Writer, base, headers, curl string) {
	fmt.Fprintf(out, "\nThe GitLab AI Gateway listens on %s. Its GitLab is a DEMO issuer in this process;\n", base)
	fmt.Fprintf(out, "%s holds a token it minted (valid 1 h, renewed while the demo runs) and Rails' headers.\n", headers)
	for _, c := range demoCalls() {
		fmt.Fprintf(out, "\n  # %s\n  curl %sN %s%s -H @%s", c.what, curl, base, c.path, headers)
		for k, v := range c.extra {
			fmt.Fprintf(out, " -H '%s: %s'", k, v)
		}
		fmt.Fprintf(out, " \\\n    -d '%s'\n", strings.ReplaceAll(c.body, "'", `'\''`))
	}
	fmt.Fprintf(out, "\n  # GitLab's own liveness probe\n  curl %s %s/monitoring/healthz\n", curl, base)
}

// checkDemoGateway sends every demoCall and reports the first failure.
func checkDemoGateway(out io.Writer, hc *http.Client, base string, h http.Header) error {
	for _, c := range demoCalls() {
		req, err := http.NewRequest(http.MethodPost, base+c.path, strings.NewReader(c.body))
		if err != nil {
			return err
		}
		req.Header = h.Clone()
		for k, v := range c.extra {
			req.Header.Set(k, v)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return fmt.Errorf("%s: %w", c.path, err)
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("%s: read: %w", c.path, err)
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: HTTP %d: %s", c.path, resp.StatusCode, b)
		}
		if why := c.check(b); why != "" {
			return fmt.Errorf("%s: %s in %s", c.path, why, b)
		}
		fmt.Fprintf(out, "\n%s (POST %s) answered:\n%s\n", c.what, c.path, indent(b))
	}
	return nil
}

// maxShownLines bounds each answer --check prints: the sandbox pads its
// replies to max_tokens, which is long for a terminal.
const maxShownLines = 24

// indent prefixes the first maxShownLines lines of b with two spaces.
func indent(b []byte) string {
	var out strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		if n++; n <= maxShownLines {
			out.WriteString("  ")
			out.Write(sc.Bytes())
			out.WriteByte('\n')
		}
	}
	if n > maxShownLines {
		fmt.Fprintf(&out, "  … (%d more lines)\n", n-maxShownLines)
	}
	return strings.TrimRight(out.String(), "\n")
}

// demoStateDir makes the demo's throwaway state directory.
func demoStateDir() (string, error) {
	d, err := os.MkdirTemp("", "duo-confidential-demo-")
	if err != nil {
		return "", fmt.Errorf("demo state directory: %w", err)
	}
	return d, nil
}
