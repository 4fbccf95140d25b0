package receipts

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/proxy/attest"
)

// testTrust is a two-entry trust log built with the real chain code.
func testTrust(t *testing.T) []attest.TrustEntry {
	t.Helper()
	tl, err := attest.OpenTrustLog(filepath.Join(t.TempDir(), "trust-log.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	for i, ev := range []string{"ev1", "ev2"} {
		res := &attest.Result{Verdict: attest.VerdictAccepted, Platform: "tdx", ManifestSHA256: "m", EvidenceSHA256: ev,
			VerifiedAt: time.Date(2026, 1, 1, i, 0, 0, 0, time.UTC), TCBStatus: "UpToDate"}
		if _, err := tl.Append(res); err != nil {
			t.Fatal(err)
		}
	}
	es, err := tl.Entries()
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func link(e attest.TrustEntry) TrustLink { return TrustLink{Seq: e.Seq, Hash: TrustHash(e.Hash)} }

func openTest(t *testing.T, dir string, mod func(*Options)) *Log {
	t.Helper()
	o := Options{Dir: dir, Interval: time.Hour}
	if mod != nil {
		mod(&o)
	}
	l, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func sample(i int, tr TrustLink) Receipt {
	return Receipt{Time: time.Date(2026, 3, 1, 10, 0, i, 0, time.UTC), Route: "chat", Model: "m", Status: 200,
		RequestSHA256: Digest([32]byte{byte(i)}), ResponseSHA256: Digest([32]byte{1, byte(i)}), SecretID: "sid", Trust: &tr}
}

// writeN writes n receipts and closes the log (final checkpoint).
func writeN(t *testing.T, dir string, n int, tr TrustLink, mod func(*Options)) {
	t.Helper()
	l := openTest(t, dir, mod)
	for i := range n {
		l.Record(sample(i, tr))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func verify(t *testing.T, dir string, trust []attest.TrustEntry) *Report {
	t.Helper()
	pub, err := ReadPublicKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := VerifyDir(dir, VerifyOptions{PublicKey: pub, Trust: trust})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestWriteVerifyAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	trust := testTrust(t)
	writeN(t, dir, 10, link(trust[0]), nil)
	writeN(t, dir, 5, link(trust[1]), nil)
	r := verify(t, dir, trust)
	if !r.OK() || r.Receipts != 15 || r.Checkpoints != 2 || r.Unsigned != 0 || r.Files != 2 {
		t.Fatalf("report %+v", r)
	}
	if r.TrustLinks[1] != 10 || r.TrustLinks[2] != 5 {
		t.Fatalf("links %v", r.TrustLinks)
	}
}

func TestWindowCountsOnly(t *testing.T) {
	dir := t.TempDir()
	trust := testTrust(t)
	writeN(t, dir, 10, link(trust[0]), nil)
	pub, _ := ReadPublicKey(dir)
	r, err := VerifyDir(dir, VerifyOptions{PublicKey: pub, Trust: trust,
		From: time.Date(2026, 3, 1, 10, 0, 2, 0, time.UTC), To: time.Date(2026, 3, 1, 10, 0, 5, 0, time.UTC)})
	if err != nil || !r.OK() || r.InWindow != 3 || r.Receipts != 10 {
		t.Fatalf("report %+v %v", r, err)
	}
}

// lines returns the lines of the only receipt file in dir.
func onlyFile(t *testing.T, dir string) (string, [][]byte) {
	t.Helper()
	files, _ := listFiles(dir)
	if len(files) != 1 {
		t.Fatalf("files %v", files)
	}
	p := filepath.Join(dir, files[0])
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return p, bytes.SplitAfter(b, []byte("\n"))
}

func TestTamperingDetected(t *testing.T) {
	trust := testTrust(t)
	cases := []struct {
		name, want string
		edit       func(lines [][]byte) [][]byte
	}{
		{"flipped byte", "altered", func(ls [][]byte) [][]byte {
			i := bytes.Index(ls[3], []byte(`"status":200`))
			ls[3][i+10] = '1' // 200 → 201
			return ls
		}},
		{"deleted line", "removed, added or reordered", func(ls [][]byte) [][]byte {
			return append(ls[:2:2], ls[3:]...)
		}},
		{"reordered lines", "removed, added or reordered", func(ls [][]byte) [][]byte {
			ls[2], ls[3] = ls[3], ls[2]
			return ls
		}},
		{"swapped checkpoint", "moved or swapped", func(ls [][]byte) [][]byte {
			// The final checkpoint covers receipt 6; move it before receipt 6.
			n := len(ls) - 2 // last line is "" after the final newline
			ls[n-1], ls[n] = ls[n], ls[n-1]
			return ls
		}},
		{"forged checkpoint signature", "signature is not valid", func(ls [][]byte) [][]byte {
			n := len(ls) - 2
			ls[n] = bytes.Replace(ls[n], []byte(`"sig":"`), []byte(`"sig":"AA`), 1)
			return ls
		}},
		{"wrong trust link", "does not hold", func(ls [][]byte) [][]byte {
			ls[1] = bytes.Replace(ls[1], []byte(`"trust":{"seq":1`), []byte(`"trust":{"seq":2`), 1)
			return ls
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			writeN(t, dir, 6, link(trust[0]), nil)
			if r := verify(t, dir, trust); !r.OK() {
				t.Fatalf("clean log: %v", r.Problems)
			}
			p, ls := onlyFile(t, dir)
			if err := os.WriteFile(p, bytes.Join(c.edit(ls), nil), 0o600); err != nil {
				t.Fatal(err)
			}
			r := verify(t, dir, trust)
			if r.OK() || !strings.Contains(strings.Join(r.Problems, "\n"), c.want) {
				t.Fatalf("want a problem containing %q, got %v", c.want, r.Problems)
			}
		})
	}
}

func TestSwappedCheckpointFromOtherLog(t *testing.T) {
	trust := testTrust(t)
	a, b := t.TempDir(), t.TempDir()
	writeN(t, a, 3, link(trust[0]), nil)
	writeN(t, b, 3, link(trust[0]), nil)
	pa, la := onlyFile(t, a)
	_, lb := onlyFile(t, b)
	la[len(la)-2] = lb[len(lb)-2] // b's checkpoint (other key, other chain) into a
	_ = os.WriteFile(pa, bytes.Join(la, nil), 0o600)
	if r := verify(t, a, trust); r.OK() {
		t.Fatal("a foreign checkpoint went unnoticed")
	}
}

func TestTornLastLineIsReportedAndLogContinues(t *testing.T) {
	dir := t.TempDir()
	trust := testTrust(t)
	writeN(t, dir, 4, link(trust[0]), nil)
	p, _ := onlyFile(t, dir)
	// A crash in the middle of a write: half a receipt, no newline.
	f, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	_, _ = f.WriteString(`{"seq":5,"t":"2026-03-01T10:00:05Z","route":"ch`)
	_ = f.Close()
	r := verify(t, dir, trust)
	if !r.OK() || len(r.Torn) != 1 || r.Receipts != 4 {
		t.Fatalf("torn tail: %+v", r)
	}
	// The appliance restarts and writes on: everything still verifies.
	writeN(t, dir, 3, link(trust[0]), nil)
	r = verify(t, dir, trust)
	if !r.OK() || len(r.Torn) != 1 || r.Receipts != 7 || r.Unsigned != 0 {
		t.Fatalf("after restart: %+v", r)
	}
}

// failingFile fails writes after a number of bytes, like a full disk.
type failingFile struct {
	f    *os.File
	mu   *sync.Mutex
	fail *bool
}

func (w failingFile) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if *w.fail {
		n, _ := w.f.Write(p[:len(p)/2]) // a partial write, as ENOSPC leaves
		return n, errors.New("no space left on device")
	}
	return w.f.Write(p)
}
func (w failingFile) Sync() error            { return w.f.Sync() }
func (w failingFile) Truncate(n int64) error { return w.f.Truncate(n) }
func (w failingFile) Close() error           { return w.f.Close() }

func TestFullDiskFollowsOnFailure(t *testing.T) {
	trust := testTrust(t)
	for _, mode := range []OnFailure{Refuse, Warn} {
		t.Run(map[OnFailure]string{Refuse: "refuse", Warn: "warn"}[mode], func(t *testing.T) {
			dir := t.TempDir()
			var mu sync.Mutex
			full := false
			l := openTest(t, dir, func(o *Options) {
				o.OnFailure, o.QueueSize, o.RefuseWait = mode, 4, 10*time.Millisecond
				o.Create = func(p string) (File, error) {
					f, err := osCreate(p)
					if err != nil {
						return nil, err
					}
					return failingFile{f.(*os.File), &mu, &full}, nil
				}
			})
			l.Record(sample(0, link(trust[0])))
			waitFor(t, func() bool { return l.Stats().Written == 1 })
			mu.Lock()
			full = true
			mu.Unlock()
			for i := 1; i < 10; i++ {
				l.Record(sample(i, link(trust[0])))
			}
			waitFor(t, func() bool { return l.Stats().Failing })
			st := l.Stats()
			if st.Failures == 0 {
				t.Fatal("failures not counted")
			}
			admitErr := l.Admit()
			if mode == Refuse && !errors.Is(admitErr, ErrUnavailable) {
				t.Fatalf("refuse mode admits while failing: %v", admitErr)
			}
			if mode == Warn && admitErr != nil {
				t.Fatalf("warn mode refuses: %v", admitErr)
			}
			// The disk has room again: the pending batch is written, new
			// requests are admitted, and the log verifies.
			mu.Lock()
			full = false
			mu.Unlock()
			waitFor(t, func() bool { return !l.Stats().Failing })
			if err := l.Admit(); err != nil {
				t.Fatal(err)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			st = l.Stats()
			r := verify(t, dir, trust)
			if !r.OK() {
				t.Fatalf("after recovery: %v", r.Problems)
			}
			// Every receipt is either written or counted as lost.
			lost := 10 - int(st.Written)
			if lost < 0 || (lost > 0 && st.Failures == 0) || r.Receipts != st.Written {
				t.Fatalf("written %d, verified %d, failures %d", st.Written, r.Receipts, st.Failures)
			}
		})
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for range 500 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("condition not reached in 5s")
}

func TestRotationAndRetention(t *testing.T) {
	dir := t.TempDir()
	trust := testTrust(t)
	now := time.Date(2026, 3, 1, 23, 59, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	l := openTest(t, dir, func(o *Options) { o.Now, o.MaxFileBytes = clock, 1500 })
	for i := range 12 {
		l.Record(sample(i, link(trust[0])))
		waitFor(t, func() bool { return l.Stats().Written == uint64(i+1) })
		if i == 8 {
			mu.Lock()
			now = now.Add(2 * time.Minute) // the next UTC day
			mu.Unlock()
		}
	}
	_ = l.Close()
	files, _ := listFiles(dir)
	if len(files) < 3 {
		t.Fatalf("no rotation: %v", files)
	}
	r := verify(t, dir, trust)
	if !r.OK() || r.Receipts != 12 || r.Checkpoints < len(files) {
		t.Fatalf("rotated log: %+v", r)
	}
	// Retention by age: a file whose last receipt is older than max_age
	// goes, newer ones stay.
	old := now.Add(-500 * 24 * time.Hour)
	if err := os.Chtimes(filepath.Join(dir, files[0]), old, old); err != nil {
		t.Fatal(err)
	}
	removed, err := retain(dir, "", now, 400*24*time.Hour, -1)
	if err != nil || len(removed) != 1 || removed[0] != files[0] {
		t.Fatalf("age retention removed %v (%v), want %s", removed, err, files[0])
	}
	if r := verify(t, dir, trust); !r.OK() || r.LastSeq != 12 {
		t.Fatalf("after age retention: %+v", r)
	}
	// Retention by size keeps the newest files; the rest still verifies,
	// anchored where the oldest kept file starts.
	removed, err = retain(dir, "", now, -1, 2500)
	if err != nil || len(removed) == 0 {
		t.Fatalf("retention removed %v, %v", removed, err)
	}
	r = verify(t, dir, trust)
	if !r.OK() || r.AnchoredAt == 0 || r.LastSeq != 12 {
		t.Fatalf("after retention: %+v", r)
	}
}

func TestExportVerifyOnCleanDir(t *testing.T) {
	dir := t.TempDir()
	trust := testTrust(t)
	writeN(t, dir, 5, link(trust[1]), nil)
	b, err := Export(dir, trust, time.Time{}, time.Time{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	clean := filepath.Join(t.TempDir(), "bundle.json")
	if err := os.WriteFile(clean, b, 0o644); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(clean)
	pub, _ := ReadPublicKey(dir)
	r, _, err := VerifyBundle(data, pub, VerifyOptions{})
	if err != nil || !r.OK() || r.Receipts != 5 || r.TrustLinks[2] != 5 {
		t.Fatalf("bundle: %+v %v", r, err)
	}
	// Without a pinned key the embedded one is used.
	if r, _, err := VerifyBundle(data, nil, VerifyOptions{}); err != nil || !r.OK() {
		t.Fatalf("unpinned: %v", err)
	}
	// Any change to the bundle breaks its signature.
	bad := bytes.Replace(data, []byte(`\"status\":200`), []byte(`\"status\":500`), 1)
	if bytes.Equal(bad, data) {
		t.Fatal("test edit did not apply")
	}
	if _, _, err := VerifyBundle(bad, nil, VerifyOptions{}); err == nil {
		t.Fatal("altered bundle accepted")
	}
	// Another key pinned: refused.
	other := t.TempDir()
	k, _ := LoadOrCreateKeys(other)
	if _, _, err := VerifyBundle(data, k.Signing.Public().(ed25519.PublicKey), VerifyOptions{}); err == nil {
		t.Fatal("bundle accepted under a different pinned key")
	}
}

func TestHashUserKeyed(t *testing.T) {
	a, b := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	if HashUser(a, "i", "42") == HashUser(b, "i", "42") || HashUser(a, "i", "42") == HashUser(a, "j", "42") {
		t.Fatal("hash does not depend on key and instance")
	}
	h1, h2 := HashUser(a, "i", "42"), HashUser(a, "i", "42")
	if h1 != h2 || HashUser(a, "i", "") != "" {
		t.Fatal("hash not stable")
	}
	if len(h1) != 16 {
		t.Fatalf("hash %q is not 96 bits in base64url", h1)
	}
}

func TestTrustAtPicksLinkCurrentWhenSent(t *testing.T) {
	l := openTest(t, t.TempDir(), nil)
	defer l.Close()
	t0 := time.Now()
	l.SetTrust(TrustLink{Seq: 1, Hash: "a"}, t0)
	l.SetTrust(TrustLink{Seq: 2, Hash: "b"}, t0.Add(time.Minute))
	if _, ok := l.TrustAt(t0.Add(-time.Second)); ok {
		t.Fatal("link before any attestation")
	}
	if tl, _ := l.TrustAt(t0.Add(time.Second)); tl.Seq != 1 {
		t.Fatalf("got %d", tl.Seq)
	}
	if tl, _ := l.TrustAt(t0.Add(2 * time.Minute)); tl.Seq != 2 {
		t.Fatalf("got %d", tl.Seq)
	}
}
