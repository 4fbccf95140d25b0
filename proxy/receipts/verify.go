package receipts

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/duo-confidential/duo-confidential/proxy/attest"
)

// VerifyOptions says what Verify checks against.
type VerifyOptions struct {
	// PublicKey verifies checkpoint signatures; nil reports every
	// checkpoint as unverifiable.
	PublicKey ed25519.PublicKey
	// Trust is the trust log; every receipt's link must name one of its
	// entries by sequence number and hash. Nil skips the link check (and
	// says so).
	Trust []attest.TrustEntry
	// From and To limit the summary (counts, outcomes, links) to receipts
	// whose time is within [From, To); the chain is checked throughout.
	From, To time.Time
	// MaxProblems bounds the problems listed (default 100); the count is
	// always complete.
	MaxProblems int
}

// Report is what verification found, for people and for tests.
type Report struct {
	Files           int            `json:"files"`
	Receipts        uint64         `json:"receipts"`  // all receipts read
	InWindow        uint64         `json:"in_window"` // within From/To
	FirstSeq        uint64         `json:"first_seq"`
	LastSeq         uint64         `json:"last_seq"`
	First           time.Time      `json:"first,omitzero"` // in the window
	Last            time.Time      `json:"last,omitzero"`
	AnchoredAt      uint64         `json:"anchored_at"` // the chain starts after this seq (earlier files removed)
	Checkpoints     int            `json:"checkpoints"`
	LastCheckpoint  uint64         `json:"last_checkpoint_seq"`
	Unsigned        uint64         `json:"unsigned"` // receipts after the last valid checkpoint
	Torn            []string       `json:"torn,omitempty"`
	Problems        []string       `json:"problems,omitempty"`
	ProblemCount    int            `json:"problem_count"`
	Outcomes        map[string]int `json:"outcomes"`
	NotSent         uint64         `json:"not_sent"` // refused before anything left
	TrustLinks      map[int]uint64 `json:"trust_links"`
	TrustChecked    bool           `json:"trust_checked"`
	SignaturesKnown bool           `json:"signatures_checked"`
	trust           map[int]attest.TrustEntry
	max             int
}

// OK reports whether nothing was found wrong.
func (r *Report) OK() bool { return r.ProblemCount == 0 }

// TrustEntry returns the trust-log entry a link names, if known.
func (r *Report) TrustEntry(seq int) (attest.TrustEntry, bool) {
	e, ok := r.trust[seq]
	return e, ok
}

func (r *Report) problem(format string, args ...any) {
	r.ProblemCount++
	if len(r.Problems) < r.max {
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	}
}

// verifier walks the chain across files.
type verifier struct {
	o       VerifyOptions
	r       *Report
	seq     uint64
	head    string
	started bool
	keyID   string
}

func newVerifier(o VerifyOptions) *verifier {
	if o.MaxProblems <= 0 {
		o.MaxProblems = 100
	}
	r := &Report{Outcomes: map[string]int{}, TrustLinks: map[int]uint64{}, max: o.MaxProblems,
		TrustChecked: o.Trust != nil, SignaturesKnown: o.PublicKey != nil, trust: map[int]attest.TrustEntry{}}
	for _, e := range o.Trust {
		r.trust[e.Seq] = e
	}
	v := &verifier{o: o, r: r}
	if o.PublicKey != nil {
		v.keyID = KeyID(o.PublicKey)
	}
	return v
}

// VerifyDir verifies every receipt file in dir, in chain order.
func VerifyDir(dir string, o VerifyOptions) (*Report, error) {
	files, err := listFiles(dir)
	if err != nil {
		return nil, err
	}
	v := newVerifier(o)
	for _, name := range files {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", name, err)
		}
		err = v.file(name, f)
		_ = f.Close()
		if err != nil {
			return nil, err
		}
	}
	return v.finish(), nil
}

// VerifyFiles verifies receipt files given by name and content, in order.
func VerifyFiles(files []NamedFile, o VerifyOptions) *Report {
	v := newVerifier(o)
	for _, f := range files {
		_ = v.file(f.Name, bytes.NewReader([]byte(f.Content)))
	}
	return v.finish()
}

// NamedFile is a receipt file's name and content.
type NamedFile struct {
	Name    string `json:"name"`
	Content string `json:"content"`
}

func (v *verifier) finish() *Report {
	r := v.r
	r.LastSeq = v.seq
	if v.seq > r.LastCheckpoint {
		r.Unsigned = v.seq - r.LastCheckpoint
	}
	return r
}

// lineSplitter is bufio.ScanLines that remembers whether the last line
// had no newline (a torn write).
type lineSplitter struct{ torn bool }

func (s *lineSplitter) split(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return i + 1, data[:i], nil
	}
	if atEOF && len(data) > 0 {
		s.torn = true
		return len(data), data, nil
	}
	return 0, nil, nil
}

// file verifies one file's lines, continuing the chain.
func (v *verifier) file(name string, rd io.Reader) error {
	v.r.Files++
	sp := &lineSplitter{}
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	sc.Split(sp.split)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Bytes()
		if sp.torn {
			v.r.Torn = append(v.r.Torn, fmt.Sprintf("%s:%d: %d bytes without an end of line (a write cut off by a crash or a full disk); ignored", name, n, len(line)))
			break
		}
		v.line(name, n, n == 1, line)
	}
	if err := sc.Err(); err != nil {
		if err == bufio.ErrTooLong {
			v.r.problem("%s:%d: line longer than %d bytes; the rest of the file was not read", name, n+1, maxLine)
			return nil
		}
		return fmt.Errorf("read %s: %w", name, err)
	}
	if n == 0 {
		v.r.Torn = append(v.r.Torn, name+": empty file (created just before a crash or a failed write)")
	}
	return nil
}

func (v *verifier) line(name string, n int, first bool, line []byte) {
	at := fmt.Sprintf("%s:%d", name, n)
	var probe struct {
		Kind string `json:"kind"`
	}
	if json.Unmarshal(line, &probe) != nil {
		v.r.problem("%s: not a JSON object: the line was damaged", at)
		return
	}
	if first != (probe.Kind == kindStart) {
		if first {
			v.r.problem("%s: the file does not begin with a start line", at)
		} else {
			v.r.problem("%s: a start line in the middle of a file", at)
			return
		}
	}
	switch probe.Kind {
	case kindStart:
		var s Start
		if strict(line, &s) != nil {
			v.r.problem("%s: malformed start line", at)
			return
		}
		if !v.started {
			v.started, v.seq, v.head = true, s.Seq, s.Prev
			v.r.AnchoredAt, v.r.LastCheckpoint = s.Seq, s.Seq
			return
		}
		if s.Seq != v.seq || s.Prev != v.head {
			v.r.problem("%s: the file does not continue the chain (it starts after receipt %d, the chain is at %d): a file is missing or was altered", at, s.Seq, v.seq)
			v.seq, v.head = s.Seq, s.Prev
		}
	case kindCheckpoint:
		v.checkpoint(at, line)
	case "":
		v.receipt(at, line)
	default:
		v.r.problem("%s: unknown line kind %q", at, probe.Kind)
	}
}

func (v *verifier) checkpoint(at string, line []byte) {
	var c Checkpoint
	if strict(line, &c) != nil {
		v.r.problem("%s: malformed checkpoint", at)
		return
	}
	if c.Seq != v.seq || c.Head != v.head {
		v.r.problem("%s: checkpoint for receipt %d does not match the chain here (at receipt %d): checkpoints were moved or swapped", at, c.Seq, v.seq)
		return
	}
	if v.o.PublicKey == nil {
		v.r.problem("%s: checkpoint signature not checked: no public key", at)
		return
	}
	sig, err := b64.DecodeString(c.Sig)
	if err != nil || c.KeyID != v.keyID || !ed25519.Verify(v.o.PublicKey, checkpointMessage(c.Seq, c.Head, c.Time), sig) {
		v.r.problem("%s: checkpoint signature is not valid for key %s", at, v.keyID)
		return
	}
	v.r.Checkpoints++
	v.r.LastCheckpoint = c.Seq
}

func (v *verifier) receipt(at string, line []byte) {
	body, h, err := splitHash(line)
	if err != nil {
		v.r.problem("%s: receipt without a chain hash", at)
		return
	}
	var r Receipt
	if strict(line, &r) != nil {
		v.r.problem("%s: malformed receipt", at)
		return
	}
	if !v.started {
		v.r.problem("%s: receipt before any start line", at)
		v.started = true
	}
	if r.Seq != v.seq+1 {
		v.r.problem("%s: receipt %d follows receipt %d: receipts were removed, added or reordered", at, r.Seq, v.seq)
	} else if chainHash(v.head, body) != h {
		v.r.problem("%s: receipt %d does not match its chain hash: it was altered", at, r.Seq)
	}
	v.seq, v.head = r.Seq, h
	v.r.Receipts++
	if v.r.FirstSeq == 0 {
		v.r.FirstSeq = r.Seq
	}
	if r.Trust != nil && v.o.Trust != nil {
		if e, ok := v.r.trust[r.Trust.Seq]; !ok || TrustHash(e.Hash) != r.Trust.Hash {
			v.r.problem("%s: receipt %d names trust-log entry %d (%.12s…), which the trust log does not hold", at, r.Seq, r.Trust.Seq, r.Trust.Hash)
		}
	}
	if r.RequestSHA256 != "" && r.Trust == nil {
		v.r.problem("%s: receipt %d was sent without a trust-log link", at, r.Seq)
	}
	if (!v.o.From.IsZero() && r.Time.Before(v.o.From)) || (!v.o.To.IsZero() && !r.Time.Before(v.o.To)) {
		return
	}
	v.r.InWindow++
	if v.r.First.IsZero() {
		v.r.First = r.Time
	}
	v.r.Last = r.Time
	if r.RequestSHA256 == "" {
		v.r.NotSent++
	}
	if r.Trust != nil {
		v.r.TrustLinks[r.Trust.Seq]++
	}
	if r.Outcome != "" {
		v.r.Outcomes[r.Outcome]++
	}
}

// strict decodes one JSON object refusing unknown fields and trailing data.
func strict(line []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(line))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return fmt.Errorf("trailing data")
	}
	return nil
}
