package attest

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/duo-confidential/duo-confidential/internal/statedir"
)

// TrustEntry is one accepted attestation in the trust log, or (Event set)
// one event that changes what the appliance can be trusted with, such as
// GitLab sending a Duo feature elsewhere. Entries are chained: Hash covers
// every field and the previous entry's Hash, so removing, reordering or
// editing an entry breaks the chain.
type TrustEntry struct {
	Seq            int       `json:"seq"`
	Time           time.Time `json:"time"`
	Platform       Platform  `json:"platform"`
	ManifestSHA256 string    `json:"manifest_sha256"`
	EvidenceSHA256 string    `json:"evidence_sha256"`
	TCBStatus      string    `json:"tcb_status"`
	Verdict        Verdict   `json:"verdict"`
	// Event names an event entry (e.g. "gitlab-drift"); empty for an
	// attestation. Detail says what happened.
	Event  string `json:"event,omitempty"`
	Detail string `json:"detail,omitempty"`
	Prev   string `json:"prev"`
	Hash   string `json:"hash"`
}

// maxEventDetail bounds an event entry's detail.
const maxEventDetail = 2048

// digest is SHA-256 over a fixed, unambiguous rendering of the entry
// (length-prefixed fields), independent of JSON encoder details.
// Attestation entries keep the original rendering, so existing logs verify.
func (e *TrustEntry) digest() string {
	h := sha256.New()
	if e.Event != "" {
		for _, f := range []string{"duo-confidential-trust-log/2", strconv.Itoa(e.Seq), e.Time.UTC().Format(time.RFC3339Nano), e.Event, e.Detail, e.Prev} {
			fmt.Fprintf(h, "%d:%s;", len(f), f)
		}
		return hex.EncodeToString(h.Sum(nil))
	}
	for _, f := range []string{
		"duo-confidential-trust-log/1",
		strconv.Itoa(e.Seq),
		e.Time.UTC().Format(time.RFC3339Nano),
		string(e.Platform),
		e.ManifestSHA256,
		e.EvidenceSHA256,
		e.TCBStatus,
		string(e.Verdict),
		e.Prev,
	} {
		fmt.Fprintf(h, "%d:%s;", len(f), f)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TrustLog is the append-only, hash-chained record of accepted manifests
// and evidence, kept as JSON lines in the state directory. It is safe for
// concurrent use within one process.
type TrustLog struct {
	path string
	mu   sync.Mutex
}

// OpenTrustLog opens (or prepares to create) the log at path and verifies
// the chain of what is there. A broken chain is a ClassTrustLog error:
// the operator must look at it, we never repair it silently.
func OpenTrustLog(path string) (*TrustLog, error) {
	l := &TrustLog{path: path}
	if _, err := l.Entries(); err != nil {
		return nil, err
	}
	return l, nil
}

// Path returns the log's file path.
func (l *TrustLog) Path() string { return l.path }

// Entries reads and verifies the whole log, oldest first.
func (l *TrustLog) Entries() ([]TrustEntry, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.read()
}

func (l *TrustLog) read() ([]TrustEntry, error) {
	b, err := statedir.ReadFile(l.path)
	if err != nil {
		return nil, newError(ClassTrustLog, l.path, err, "read trust log")
	}
	var entries []TrustEntry
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var e TrustEntry
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			return nil, newError(ClassTrustLog, fmt.Sprintf("%s:%d", l.path, line), err, "undecodable trust log entry")
		}
		entries = append(entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, newError(ClassTrustLog, l.path, err, "read trust log")
	}
	if err := VerifyTrustChain(entries); err != nil {
		return nil, newError(ClassTrustLog, l.path, err, "trust log chain is broken; keep the file for investigation and move it aside to start a new log")
	}
	return entries, nil
}

// VerifyTrustChain checks sequence numbers, previous-hash links and each
// entry's own hash.
func VerifyTrustChain(entries []TrustEntry) error {
	prev := ""
	for i := range entries {
		e := &entries[i]
		if e.Seq != i+1 {
			return fmt.Errorf("entry %d has sequence number %d", i+1, e.Seq)
		}
		if e.Prev != prev {
			return fmt.Errorf("entry %d does not link to entry %d", e.Seq, e.Seq-1)
		}
		if got := e.digest(); got != e.Hash {
			return fmt.Errorf("entry %d hash mismatch: content was altered", e.Seq)
		}
		prev = e.Hash
	}
	return nil
}

// CheckRollback refuses a manifest that was accepted before but has since
// been replaced by another one, unless its hash is in approved. Without
// version numbers in manifests, "older" means "superseded in our own log".
func (l *TrustLog) CheckRollback(manifestSHA256 string, approved []string) error {
	entries, err := l.Entries()
	if err != nil {
		return err
	}
	return checkRollback(entries, manifestSHA256, approved)
}

func checkRollback(entries []TrustEntry, manifestSHA256 string, approved []string) error {
	entries = Attestations(entries)
	if len(entries) == 0 || entries[len(entries)-1].ManifestSHA256 == manifestSHA256 {
		return nil
	}
	for i := len(entries) - 2; i >= 0; i-- {
		if entries[i].ManifestSHA256 != manifestSHA256 {
			continue
		}
		if slices.ContainsFunc(approved, func(a string) bool { return strings.EqualFold(a, manifestSHA256) }) {
			return nil
		}
		return newError(ClassRollback, "manifest", nil,
			"manifest %s was accepted at %s and replaced by %s since; to return to it, add its hash to attestation.manifest.approved_rollbacks",
			manifestSHA256, entries[i].Time.UTC().Format(time.RFC3339), entries[len(entries)-1].ManifestSHA256)
	}
	return nil
}

// Append adds an accepted verification to the log. Callers append only
// after every check passed. Consecutive acceptances of the same manifest
// and evidence are recorded once, so periodic re-attestation does not grow
// the log without bound; a new manifest or new evidence always adds an entry.
func (l *TrustLog) Append(res *Result) (*TrustEntry, error) {
	if res.Verdict != VerdictAccepted {
		return nil, newError(ClassTrustLog, "append", nil, "only accepted verifications are recorded")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	entries, err := l.read()
	if err != nil {
		return nil, err
	}
	if att := Attestations(entries); len(att) > 0 {
		last := att[len(att)-1]
		if last.ManifestSHA256 == res.ManifestSHA256 && last.EvidenceSHA256 == res.EvidenceSHA256 {
			return &last, nil
		}
	}
	e := TrustEntry{
		Seq:            len(entries) + 1,
		Time:           res.VerifiedAt.UTC(),
		Platform:       res.Platform,
		ManifestSHA256: res.ManifestSHA256,
		EvidenceSHA256: res.EvidenceSHA256,
		TCBStatus:      trustTCBStatus(res),
		Verdict:        res.Verdict,
	}
	return l.write(entries, e)
}

// AppendEvent adds an event entry (detail cut to 2 KiB). The same event
// with the same detail as the latest entry of that event is recorded once,
// so a condition that lasts does not grow the log at every check.
func (l *TrustLog) AppendEvent(event, detail string, at time.Time) (*TrustEntry, error) {
	if event == "" {
		return nil, newError(ClassTrustLog, "append", nil, "an event entry needs a name")
	}
	if len(detail) > maxEventDetail {
		detail = detail[:maxEventDetail]
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	entries, err := l.read()
	if err != nil {
		return nil, err
	}
	for i := len(entries) - 1; i >= 0; i-- {
		if entries[i].Event == event {
			if entries[i].Detail == detail {
				return &entries[i], nil
			}
			break
		}
	}
	return l.write(entries, TrustEntry{Seq: len(entries) + 1, Time: at.UTC(), Event: event, Detail: detail})
}

// Attestations returns the attestation entries of a log, without events.
func Attestations(entries []TrustEntry) []TrustEntry {
	out := make([]TrustEntry, 0, len(entries))
	for _, e := range entries {
		if e.Event == "" {
			out = append(out, e)
		}
	}
	return out
}

// write links e to entries and rewrites the log with it appended.
func (l *TrustLog) write(entries []TrustEntry, e TrustEntry) (*TrustEntry, error) {
	if len(entries) > 0 {
		e.Prev = entries[len(entries)-1].Hash
	}
	e.Hash = e.digest()
	var buf bytes.Buffer
	for _, old := range append(entries, e) {
		line, err := json.Marshal(old)
		if err != nil {
			return nil, newError(ClassTrustLog, "append", err, "encode entry")
		}
		buf.Write(line)
		buf.WriteByte('\n')
	}
	// Rewriting the whole (small) file atomically keeps the log consistent
	// even if we crash mid-write; the chain makes tampering evident.
	if err := statedir.WriteFile(l.path, buf.Bytes(), statedir.SecretMode); err != nil {
		return nil, newError(ClassTrustLog, l.path, err, "write trust log")
	}
	return &e, nil
}

// tcbSummary condenses per-component TCB statuses into one word for the
// log: the worst status seen, or "unknown" when none was evaluated.
// trustTCBStatus is what the log records about the TCB: the vendor's
// overall status when there is one (else the component statuses), the
// advisories it names, and the operator policy that accepted it, so an
// audit sees every acceptance of a platform that was not UpToDate.
func trustTCBStatus(res *Result) string {
	s := tcbSummary(res.TCB)
	if res.TCBStatus != "" {
		s = res.TCBStatus
	}
	if len(res.TCBAdvisories) > 0 {
		s += " [" + strings.Join(res.TCBAdvisories, " ") + "]"
	}
	if res.TCBAcceptedBy != "" {
		s += "; " + res.TCBAcceptedBy
	}
	return s
}

func tcbSummary(tcb []TCBComponent) string {
	if len(tcb) == 0 {
		return "unknown"
	}
	statuses := make([]string, 0, len(tcb))
	for _, c := range tcb {
		if c.Status != "" && !slices.Contains(statuses, c.Status) {
			statuses = append(statuses, c.Status)
		}
	}
	slices.Sort(statuses)
	return strings.Join(statuses, ",")
}
