package main

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/duo-confidential/duo-confidential/internal/statedir"
	"github.com/duo-confidential/duo-confidential/proxy/attest"
	"github.com/duo-confidential/duo-confidential/proxy/receipts"
)

// ReceiptsCmd groups the commands on the per-request receipt log.
type ReceiptsCmd struct {
	Verify   ReceiptsVerifyCmd   `cmd:"" help:"Verify the receipt log (chain, signed checkpoints, links to the trust log) or an exported bundle, and print a summary."`
	Export   ReceiptsExportCmd   `cmd:"" help:"Write a self-contained signed bundle (receipts, trust log, public key) for an auditor."`
	UserHash ReceiptsUserHashCmd `cmd:"" name:"user-hash" help:"Print the keyed hash receipts record for one GitLab user (needs the state directory's user-hash key)."`
}

// ReceiptsUserHashCmd computes one user's keyed hash, so the operator can
// find that user's receipts (receipts never hold the id itself).
type ReceiptsUserHashCmd struct {
	Instance string `name:"instance" required:"" help:"GitLab instance id (X-Gitlab-Instance-Id)." placeholder:"ID"`
	User     string `name:"user" required:"" help:"GitLab global user id (X-Gitlab-Global-User-Id)." placeholder:"ID"`
	StateDir string `name:"state-dir" help:"State directory to read (default: state_dir from the configuration)." placeholder:"DIR"`
}

// Run prints the hash.
func (c *ReceiptsUserHashCmd) Run(g *Globals) error {
	state, err := receiptsWindow{StateDir: c.StateDir}.stateDir(g)
	if err != nil {
		return fmt.Errorf("receipts user-hash: %w", err)
	}
	dir := filepath.Join(state, statedir.ReceiptsDir)
	k, err := receipts.ReadKeys(dir)
	if err != nil {
		return fmt.Errorf("receipts user-hash: %w", err)
	}
	_, err = fmt.Fprintln(g.stdout(), receipts.HashUser(k.UserKey, c.Instance, c.User))
	return err
}

// receiptsWindow is the --from/--to pair both commands take.
type receiptsWindow struct {
	From     string `name:"from" help:"Only receipts at or after this time (RFC 3339 or YYYY-MM-DD, UTC)." placeholder:"TIME"`
	To       string `name:"to" help:"Only receipts before this time (RFC 3339 or YYYY-MM-DD, UTC)." placeholder:"TIME"`
	StateDir string `name:"state-dir" help:"State directory to read (default: state_dir from the configuration)." placeholder:"DIR"`
}

func (w receiptsWindow) times() (from, to time.Time, err error) {
	parse := func(flag, s string) (time.Time, error) {
		if s == "" {
			return time.Time{}, nil
		}
		for _, layout := range []string{time.RFC3339Nano, time.DateOnly} {
			if t, err := time.Parse(layout, s); err == nil {
				return t.UTC(), nil
			}
		}
		return time.Time{}, fmt.Errorf("--%s %q is neither RFC 3339 (2026-03-01T00:00:00Z) nor a date (2026-03-01)", flag, s)
	}
	if from, err = parse("from", w.From); err != nil {
		return
	}
	if to, err = parse("to", w.To); err != nil {
		return
	}
	if !from.IsZero() && !to.IsZero() && !to.After(from) {
		err = errors.New("--to must be after --from")
	}
	return
}

// stateDir is --state-dir or the configuration's state_dir.
func (w receiptsWindow) stateDir(g *Globals) (string, error) {
	if w.StateDir != "" {
		return w.StateDir, nil
	}
	cfg, err := g.LoadConfig()
	if err != nil {
		return "", err
	}
	return cfg.StateDir, nil
}

// readTrustLog reads and verifies the trust log in the state directory.
func readTrustLog(state string) ([]attest.TrustEntry, error) {
	tl, err := attest.OpenTrustLog(filepath.Join(state, statedir.TrustLogFile))
	if err != nil {
		return nil, err
	}
	es, err := tl.Entries()
	if es == nil {
		es = []attest.TrustEntry{}
	}
	return es, err
}

// ReceiptsVerifyCmd verifies the local log or a bundle.
type ReceiptsVerifyCmd struct {
	receiptsWindow
	Bundle    string `name:"bundle" help:"Verify this exported bundle instead of the local log (needs no configuration or state)." type:"existingfile" placeholder:"FILE"`
	PublicKey string `name:"public-key" help:"The receipt public key (signing.pub) you received from the operator; checkpoints and the bundle must be signed by it." type:"existingfile" placeholder:"FILE"`
	JSON      bool   `name:"json" help:"Print the report as JSON."`
}

// Run verifies and prints the summary; it fails when anything is wrong.
func (c *ReceiptsVerifyCmd) Run(g *Globals) error {
	from, to, err := c.times()
	if err != nil {
		return fmt.Errorf("receipts verify: %w", err)
	}
	var pinned ed25519.PublicKey
	if c.PublicKey != "" {
		b, err := os.ReadFile(c.PublicKey)
		if err != nil {
			return fmt.Errorf("receipts verify: %w", err)
		}
		if pinned, err = receipts.ParsePublicKey(b); err != nil {
			return fmt.Errorf("receipts verify: %s: %w", c.PublicKey, err)
		}
	}
	o := receipts.VerifyOptions{From: from, To: to}
	var rep *receipts.Report
	var source string
	if c.Bundle != "" {
		data, err := os.ReadFile(c.Bundle)
		if err != nil {
			return fmt.Errorf("receipts verify: %w", err)
		}
		var b *receipts.Bundle
		if rep, b, err = receipts.VerifyBundle(data, pinned, o); err != nil {
			return fmt.Errorf("receipts verify: %w", err)
		}
		source = fmt.Sprintf("bundle %s (created %s, signed by key %s)", c.Bundle, b.Created.Format(time.RFC3339), b.KeyID)
	} else {
		state, err := c.stateDir(g)
		if err != nil {
			return fmt.Errorf("receipts verify: %w", err)
		}
		dir := filepath.Join(state, statedir.ReceiptsDir)
		if o.PublicKey = pinned; pinned == nil {
			if o.PublicKey, err = receipts.ReadPublicKey(dir); err != nil {
				return fmt.Errorf("receipts verify: %w", err)
			}
		}
		if o.Trust, err = readTrustLog(state); err != nil {
			return fmt.Errorf("receipts verify: %w", err)
		}
		if rep, err = receipts.VerifyDir(dir, o); err != nil {
			return fmt.Errorf("receipts verify: %w", err)
		}
		source = dir + " (key " + receipts.KeyID(o.PublicKey) + ")"
	}
	if c.JSON {
		enc := json.NewEncoder(g.stdout())
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printReceiptReport(g.stdout(), source, rep, from, to, pinned != nil)
	}
	if !rep.OK() {
		return fmt.Errorf("receipts verify: %d problem(s) found", rep.ProblemCount)
	}
	return nil
}

func printReceiptReport(w io.Writer, source string, r *receipts.Report, from, to time.Time, pinned bool) {
	fmt.Fprintf(w, "Receipts: %s\n", source)
	if !pinned {
		fmt.Fprintln(w, "  Key: taken from the log itself; pass --public-key with the key the operator gave you to pin it.")
	}
	fmt.Fprintf(w, "  Files: %d; receipts %d to %d", r.Files, r.FirstSeq, r.LastSeq)
	if r.AnchoredAt > 0 {
		fmt.Fprintf(w, " (earlier receipts were removed by retention or not exported; the chain starts after receipt %d)", r.AnchoredAt)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  Chain: %d signed checkpoints verified, the last covers receipt %d", r.Checkpoints, r.LastCheckpoint)
	if r.Unsigned > 0 {
		fmt.Fprintf(w, "; %d receipts after it are covered by the hash chain only (signed at the next checkpoint or shutdown)", r.Unsigned)
	}
	fmt.Fprintln(w)
	window := "all time"
	if !from.IsZero() || !to.IsZero() {
		window = fmt.Sprintf("%s to %s", timeOr(from, "the beginning"), timeOr(to, "now"))
	}
	fmt.Fprintf(w, "  Window %s: %d receipts", window, r.InWindow)
	if r.InWindow > 0 {
		fmt.Fprintf(w, ", first %s, last %s", r.First.Format(time.RFC3339), r.Last.Format(time.RFC3339))
	}
	fmt.Fprintln(w)
	if r.NotSent > 0 {
		fmt.Fprintf(w, "    %d requests were refused before anything was sent (no attested backend, or receipts unavailable)\n", r.NotSent)
	}
	if len(r.Outcomes) > 0 {
		fmt.Fprintf(w, "    streams: %d complete, %d cut by the relay, %d ended by the client\n",
			r.Outcomes[receipts.OutcomeComplete], r.Outcomes[receipts.OutcomeCut], r.Outcomes[receipts.OutcomeClientGone])
	}
	if r.TrustChecked {
		seqs := make([]int, 0, len(r.TrustLinks))
		for s := range r.TrustLinks {
			seqs = append(seqs, s)
		}
		slices.Sort(seqs)
		fmt.Fprintln(w, "  Sent under these trust-log entries (attested backends):")
		for _, s := range seqs {
			e, _ := r.TrustEntry(s)
			fmt.Fprintf(w, "    entry %d (accepted %s): platform %s, TCB %s, manifest %.16s…, evidence %.16s… — %d requests\n",
				s, e.Time.Format(time.RFC3339), e.Platform, e.TCBStatus, e.ManifestSHA256, e.EvidenceSHA256, r.TrustLinks[s])
		}
	} else {
		fmt.Fprintln(w, "  Trust links: not checked (no trust log)")
	}
	for _, t := range r.Torn {
		fmt.Fprintf(w, "  Note: %s\n", t)
	}
	for _, p := range r.Problems {
		fmt.Fprintf(w, "  PROBLEM: %s\n", p)
	}
	if n := r.ProblemCount - len(r.Problems); n > 0 {
		fmt.Fprintf(w, "  … and %d more problems\n", n)
	}
	if r.OK() {
		fmt.Fprintln(w, "Result: VERIFIED — the chain is intact, every checkpoint is validly signed, and every sent request names an accepted trust-log entry.")
	} else {
		fmt.Fprintf(w, "Result: FAILED — %d problem(s).\n", r.ProblemCount)
	}
}

func timeOr(t time.Time, zero string) string {
	if t.IsZero() {
		return zero
	}
	return t.Format(time.RFC3339)
}

// ReceiptsExportCmd writes a signed bundle.
type ReceiptsExportCmd struct {
	receiptsWindow
	Out string `name:"out" short:"o" required:"" help:"Write the bundle to this file." placeholder:"FILE"`
}

// Run exports the receipt files covering the window.
func (c *ReceiptsExportCmd) Run(g *Globals) error {
	from, to, err := c.times()
	if err != nil {
		return fmt.Errorf("receipts export: %w", err)
	}
	state, err := c.stateDir(g)
	if err != nil {
		return fmt.Errorf("receipts export: %w", err)
	}
	trust, err := readTrustLog(state)
	if err != nil {
		return fmt.Errorf("receipts export: %w", err)
	}
	dir := filepath.Join(state, statedir.ReceiptsDir)
	if _, err := os.Stat(filepath.Join(dir, receipts.PublicKeyFile)); err != nil {
		return fmt.Errorf("receipts export: no receipt log in %s (the appliance creates it on start)", dir)
	}
	b, err := receipts.Export(dir, trust, from, to, time.Now())
	if err != nil {
		return fmt.Errorf("receipts export: %w", err)
	}
	if err := os.WriteFile(c.Out, b, 0o644); err != nil {
		return fmt.Errorf("receipts export: %w", err)
	}
	pub, err := receipts.ReadPublicKey(dir)
	if err != nil {
		return fmt.Errorf("receipts export: %w", err)
	}
	fmt.Fprintf(g.stdout(), "Wrote %s (%d bytes), signed by receipt key %s.\nGive the auditor the bundle and, separately, %s; they run:\n  %s receipts verify --bundle %s --public-key signing.pub\n",
		c.Out, len(b), receipts.KeyID(pub), filepath.Join(dir, receipts.PublicKeyFile), progName, filepath.Base(c.Out))
	return nil
}
