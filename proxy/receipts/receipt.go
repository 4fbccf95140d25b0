package receipts

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Stream outcomes.
const (
	OutcomeComplete   = "complete"    // the stream ended as the protocol says it should
	OutcomeCut        = "cut"         // the backend's stream broke, stalled or failed; the client got an error event
	OutcomeClientGone = "client_gone" // the client went away before the end
)

// TrustLink names the trust-log entry a request was sent under. Hash is
// the entry's own hash (TrustHash: base64url, to keep receipts small), which covers its evidence digest, manifest hash,
// platform and TCB status; the verifier resolves it against the trust log
// and shows those fields.
type TrustLink struct {
	Seq  int    `json:"seq"`
	Hash string `json:"h"`
	// The fields below are not stored in receipts (the hash covers them);
	// they travel with the link in memory for the admin UI.
	Platform       string `json:"-"`
	EvidenceSHA256 string `json:"-"`
	ManifestSHA256 string `json:"-"`
	TCBStatus      string `json:"-"`
}

// Receipt is one request's record. It holds no prompt, code, answer or raw
// user id; UserHash is a keyed hash (see HashUser).
type Receipt struct {
	Seq      uint64    `json:"seq"`
	Time     time.Time `json:"t"` // when the request arrived
	Route    string    `json:"route"`
	Feature  string    `json:"feature,omitempty"`  // Duo feature or flow
	Workflow string    `json:"workflow,omitempty"` // Agent Platform workflow id
	Instance string    `json:"instance,omitempty"` // GitLab instance id
	UserHash string    `json:"user,omitempty"`
	Model    string    `json:"model,omitempty"`
	Status   int       `json:"status"`
	// Outcome is set for streamed answers only (so it also says the answer
	// was a stream): complete, cut or client_gone.
	Outcome string `json:"outcome,omitempty"`
	// InTokens and OutTokens are the usage the backend reported, if any.
	InTokens  int   `json:"in,omitempty"`
	OutTokens int   `json:"out,omitempty"`
	Millis    int64 `json:"ms,omitempty"`
	// RequestSHA256 and ResponseSHA256 (base64url, unpadded) are of the
	// encrypted bytes as sent to and received from the backend; empty when
	// nothing was sent or received.
	RequestSHA256  string     `json:"req,omitempty"`
	ResponseSHA256 string     `json:"resp,omitempty"`
	SecretID       string     `json:"secret,omitempty"`
	Trust          *TrustLink `json:"trust,omitempty"`
	// Hash is the chain hash: SHA-256 over the previous line's hash and
	// this line's bytes without it.
	Hash string `json:"h,omitempty"`
}

// Checkpoint is a signed statement of the chain head.
type Checkpoint struct {
	Kind  string    `json:"kind"` // "checkpoint"
	Seq   uint64    `json:"seq"`  // the last receipt covered
	Head  string    `json:"head"` // its chain hash
	Time  time.Time `json:"t"`
	KeyID string    `json:"key"`
	Sig   string    `json:"sig"`
}

// Start opens every file: it carries the chain over from the previous file
// (or from nothing), so files removed by retention do not break the rest.
type Start struct {
	Kind string    `json:"kind"` // "start"
	Seq  uint64    `json:"seq"`  // the last receipt before this file
	Prev string    `json:"prev"` // its chain hash ("" for the first file)
	Time time.Time `json:"t"`
}

// Line kinds.
const (
	kindStart      = "start"
	kindCheckpoint = "checkpoint"
)

var (
	b64       = base64.RawURLEncoding
	hashField = []byte(`,"h":"`)
	chainTag  = []byte("duo-confidential-receipt/1\n")
)

// userHashTag starts every keyed user hash's input.
const userHashTag = "duo-confidential-user/1\x00"

// TrustHash renders a trust-log entry's hex hash as receipts store it
// (base64url); anything that is not 32 bytes of hex is returned unchanged.
func TrustHash(hexHash string) string {
	b, err := hex.DecodeString(hexHash)
	if err != nil || len(b) != 32 {
		return hexHash
	}
	return b64.EncodeToString(b)
}

// Digest renders a SHA-256 sum as receipts store it (base64url, unpadded).
func Digest(sum [32]byte) string { return b64.EncodeToString(sum[:]) }

// chainHash is the hash of a receipt line body given the previous hash.
func chainHash(prev string, body []byte) string {
	var c chainHasher
	return c.next(prev, body)
}

// appendReceipt appends r's line (with its chain hash, ending in '\n') to
// buf and returns the new chain hash. The hash covers the line as written
// without its hash member (the body ends in '}' there).
func appendReceipt(buf []byte, r *Receipt, prev string, ch *chainHasher) ([]byte, string, error) {
	start := len(buf)
	buf, err := appendReceiptJSON(buf, r)
	if err != nil {
		return buf[:start], "", err
	}
	h := ch.next(prev, buf[start:])
	r.Hash = h
	buf = append(buf[:len(buf)-1], hashField...)
	buf = append(buf, h...)
	buf = append(buf, '"', '}', '\n')
	return buf, h, nil
}

// splitHash returns a receipt line's body (as hashed) and its chain hash.
func splitHash(line []byte) (body []byte, h string, err error) {
	i := bytes.LastIndex(line, hashField)
	if i < 0 || !bytes.HasSuffix(line, []byte(`"}`)) || i+len(hashField) > len(line)-2 {
		return nil, "", errors.New("no chain hash")
	}
	h = string(line[i+len(hashField) : len(line)-2])
	body = make([]byte, 0, i+1)
	body = append(append(body, line[:i]...), '}')
	return body, h, nil
}

// checkpointMessage is what a checkpoint signature covers.
func checkpointMessage(seq uint64, head string, t time.Time) []byte {
	return fmt.Appendf(nil, "duo-confidential-receipts-checkpoint/1\n%d\n%s\n%s\n", seq, head, t.UTC().Format(time.RFC3339Nano))
}

// HashUser is the keyed hash receipts store instead of a user id:
// HMAC-SHA-256 under the appliance's user-hash key over the instance and the
// user id, truncated to 96 bits. Without the key a receipt reader cannot
// test guesses (GitLab user ids are small, enumerable numbers); with it the
// operator can find one user's receipts. Empty user gives "".
func HashUser(key []byte, instance, user string) string {
	if user == "" {
		return ""
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(userHashTag))
	m.Write([]byte(instance))
	m.Write([]byte{0})
	m.Write([]byte(user))
	return b64.EncodeToString(m.Sum(nil)[:12])
}
