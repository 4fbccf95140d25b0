package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

// Bodies is the request-body part (-parts bodies): the peak resident
// memory of a `serve` child while it takes large bodies, per MiB of body,
// and what the in-flight cap does to a burst of them.
type Bodies struct {
	Concurrency int        `json:"concurrency"`
	Rounds      int        `json:"rounds"`
	IdleMiB     float64    `json:"idle_mib"`
	Rows        []BodyRow  `json:"rows"`
	Cap         *BodiesCap `json:"cap,omitempty"`
}

// BodyRow is one body shape and size sent Concurrency at a time.
type BodyRow struct {
	Shape    string  `json:"shape"` // "one string" or "tiny keys"
	MiB      float64 `json:"mib"`
	Statuses string  `json:"statuses"` // status codes seen, e.g. "200×8"
	PeakMiB  float64 `json:"peak_rss_mib"`
	// PerMiB is (peak − idle) / (Concurrency × MiB): resident memory per
	// MiB of body in flight.
	PerMiB float64 `json:"peak_rss_per_body_mib"`
}

// BodiesCap compares a burst of large bodies with the default in-flight
// cap and with a small one.
type BodiesCap struct {
	Burst      int     `json:"burst"`
	MiB        float64 `json:"mib"`
	SmallCap   int     `json:"small_cap"`
	DefaultPk  float64 `json:"default_cap_peak_rss_mib"`
	DefaultSts string  `json:"default_cap_statuses"`
	SmallPk    float64 `json:"small_cap_peak_rss_mib"`
	SmallSts   string  `json:"small_cap_statuses"`
}

// bodySizesMiB are sent in ascending order, so each peak (VmHWM, a high
// water mark) belongs to its size.
var bodySizesMiB = []int{1, 8, 31}

// measureBodies runs the part against fresh children.
func measureBodies(ctx context.Context, cfg Config, logf func(string, ...any)) (*Bodies, error) {
	raiseNoFile()
	tmp, err := os.MkdirTemp("", "duo-bench-bodies-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	bin := cfg.Bin
	if bin == "" {
		if bin, err = buildBinary(ctx, tmp); err != nil {
			return nil, err
		}
	}
	res := &Bodies{Concurrency: 4, Rounds: 2}
	if err := res.sizes(ctx, cfg, bin, tmp, logf); err != nil {
		return nil, err
	}
	if res.Cap, err = measureCap(ctx, cfg, bin, tmp, logf); err != nil {
		return nil, err
	}
	return res, nil
}

// sizes fills the rows: the reported 31 MB body of tiny keys first (it is
// refused before parsing, so it must not move the peak), then one large
// string per size.
func (b *Bodies) sizes(ctx context.Context, cfg Config, bin, tmp string, logf func(string, ...any)) error {
	sb, srv, base, err := startChildren(ctx, bin, tmp+"/sizes", "")
	if err != nil {
		return err
	}
	defer sb.stop()
	defer srv.stop()
	pid := srv.cmd.Process.Pid
	sleepCtx(ctx, cfg.Settle)
	if b.IdleMiB, err = rssMiB(pid, "VmHWM"); err != nil {
		return err
	}
	url := base + "/v1/chat/completions"
	row := func(shape string, body []byte) error {
		sts := postBurst(ctx, url, body, b.Concurrency, b.Rounds)
		peak, err := rssMiB(pid, "VmHWM")
		if err != nil {
			return err
		}
		mib := float64(len(body)) / (1 << 20)
		b.Rows = append(b.Rows, BodyRow{Shape: shape, MiB: mib, Statuses: sts, PeakMiB: peak,
			PerMiB: (peak - b.IdleMiB) / (float64(b.Concurrency) * mib)})
		logf("bodies: %s %.1f MiB ×%d: %s, peak RSS %.0f MiB", shape, mib, b.Concurrency, sts, peak)
		return nil
	}
	if err := row("tiny keys", tinyKeysBody(31<<20)); err != nil {
		return err
	}
	for _, n := range bodySizesMiB {
		if err := row("one string", stringBody(n<<20)); err != nil {
			return err
		}
	}
	return nil
}

// measureCap sends a burst of 16 MiB bodies to a child with the default
// in-flight cap and to one with proxy.max_in_flight: 4.
func measureCap(ctx context.Context, cfg Config, bin, tmp string, logf func(string, ...any)) (*BodiesCap, error) {
	c := &BodiesCap{Burst: 32, MiB: 16, SmallCap: 4}
	body := stringBody(16 << 20)
	run := func(dir, yaml string) (float64, string, error) {
		sb, srv, base, err := startChildren(ctx, bin, dir, yaml)
		if err != nil {
			return 0, "", err
		}
		defer sb.stop()
		defer srv.stop()
		sts := postBurst(ctx, base+"/v1/chat/completions", body, c.Burst, 1)
		peak, err := rssMiB(srv.cmd.Process.Pid, "VmHWM")
		return peak, sts, err
	}
	var err error
	if c.DefaultPk, c.DefaultSts, err = run(tmp+"/cap-default", ""); err != nil {
		return nil, err
	}
	if c.SmallPk, c.SmallSts, err = run(tmp+"/cap-small", "proxy:\n  max_in_flight: "+strconv.Itoa(c.SmallCap)+"\n"); err != nil {
		return nil, err
	}
	logf("bodies: burst of %d × %.0f MiB: default cap peak %.0f MiB (%s), cap %d peak %.0f MiB (%s)",
		c.Burst, c.MiB, c.DefaultPk, c.DefaultSts, c.SmallCap, c.SmallPk, c.SmallSts)
	return c, nil
}

// postBurst sends body conc at a time, rounds times, and summarises the
// status codes ("200×8", "413×4 503×2"; 0 is a transport error).
func postBurst(ctx context.Context, url string, body []byte, conc, rounds int) string {
	tr := &http.Transport{MaxIdleConnsPerHost: conc, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 2 * time.Minute}
	var mu sync.Mutex
	counts := map[int]int{}
	for range rounds {
		var wg sync.WaitGroup
		for range conc {
			wg.Go(func() {
				code := 0
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
				if err == nil {
					req.Header.Set("Content-Type", "application/json")
					if resp, err := client.Do(req); err == nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						code = resp.StatusCode
					}
				}
				mu.Lock()
				counts[code]++
				mu.Unlock()
			})
		}
		wg.Wait()
	}
	var out bytes.Buffer
	for _, code := range []int{0, 200, 400, 413, 429, 502, 503} {
		if n := counts[code]; n > 0 {
			fmt.Fprintf(&out, "%d×%d ", code, n)
			delete(counts, code)
		}
	}
	for code, n := range counts {
		fmt.Fprintf(&out, "%d×%d ", code, n)
	}
	return string(bytes.TrimSpace(out.Bytes()))
}

// stringBody is a chat request of exactly n bytes whose user message is
// one long string.
func stringBody(n int) []byte {
	head := []byte(`{"model":"sandbox-chat","max_tokens":4,"messages":[{"role":"user","content":"`)
	tail := []byte(`"}]}`)
	b := make([]byte, 0, n)
	b = append(b, head...)
	b = append(b, bytes.Repeat([]byte("x"), max(n-len(head)-len(tail), 0))...)
	return append(b, tail...)
}

// tinyKeysBody is the reviewer's body: a chat request padded to about n
// bytes with one-digit members under distinct keys.
func tinyKeysBody(n int) []byte {
	b := make([]byte, 0, n+32)
	b = append(b, `{"model":"sandbox-chat","max_tokens":4,"messages":[{"role":"user","content":"hi"}]`...)
	for i := 0; len(b) < n-16; i++ {
		b = append(b, `,"`...)
		b = strconv.AppendInt(b, int64(i), 36)
		b = append(b, `":0`...)
	}
	return append(b, '}')
}

// Markdown renders the part.
func (b *Bodies) Markdown(w io.Writer) {
	fmt.Fprintf(w, "Request bodies (`serve` child, %d at a time, %d rounds; idle peak RSS %.0f MiB):\n\n", b.Concurrency, b.Rounds, b.IdleMiB)
	// VmHWM is a high-water mark: a smaller row after a larger peak shows
	// that peak; the largest body's row is the per-MiB figure to read.
	fmt.Fprintln(w, "| body | size | answers | peak RSS (VmHWM) | (peak − idle) per MiB of body in flight |")
	fmt.Fprintln(w, "|---|---:|---|---:|---:|")
	for _, r := range b.Rows {
		fmt.Fprintf(w, "| %s | %.1f MiB | %s | %.0f MiB | %.2f MiB |\n", r.Shape, r.MiB, r.Statuses, r.PeakMiB, r.PerMiB)
	}
	if c := b.Cap; c != nil {
		fmt.Fprintf(w, "\nA burst of %d × %.0f MiB bodies at once: default in-flight cap: peak RSS %.0f MiB (%s); proxy.max_in_flight %d: peak RSS %.0f MiB (%s).\n",
			c.Burst, c.MiB, c.DefaultPk, c.DefaultSts, c.SmallCap, c.SmallPk, c.SmallSts)
	}
}
