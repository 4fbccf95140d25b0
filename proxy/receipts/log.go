package receipts

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/duo-confidential/duo-confidential/internal/statedir"
)

// OnFailure says what happens when receipts cannot be written.
type OnFailure int

const (
	// Refuse fails closed: while receipts cannot be written (disk error,
	// queue full), new requests are refused (Admit fails) and nothing is
	// sent upstream without a receipt being possible.
	Refuse OnFailure = iota
	// Warn keeps serving; every receipt that could not be written is
	// counted as a failure and logged at error level, never dropped silently.
	Warn
)

// Options configures a Log. Zero values take the defaults named beside them.
type Options struct {
	Dir       string // the receipts directory (state_dir/receipts)
	OnFailure OnFailure
	QueueSize int // receipts waiting to be written; default 8192
	BatchMax  int // receipts per write; default 512
	// FlushDelay is how long the writer lets receipts gather after the
	// first of a batch arrives (default 10ms; negative writes at once):
	// one write and one wake-up per batch instead of per request, so the
	// writer costs the request path almost nothing under load. Receipts
	// are in memory that much longer before they reach the file.
	FlushDelay time.Duration
	Interval   time.Duration // between signed checkpoints; default 1m
	// MaxFileBytes rotates a file at this size (default 64 MiB); files also
	// rotate when the UTC day changes.
	MaxFileBytes int64
	// Retention: files whose last receipt is older than MaxAge, and the
	// oldest files while all together exceed MaxTotalBytes, are removed.
	// Defaults 400 days and 4 GiB; negative keeps forever / without limit.
	MaxAge        time.Duration
	MaxTotalBytes int64
	// SyncEveryBatch fsyncs after every batch; by default files are fsynced
	// at every checkpoint, rotation and shutdown only.
	SyncEveryBatch bool
	// RefuseWait is how long Record waits for queue space in Refuse mode
	// before counting a failure; default 2s.
	RefuseWait time.Duration
	Logger     *slog.Logger
	Now        func() time.Time
	// Create opens a new receipt file; nil uses the file system. Tests
	// inject failures here.
	Create func(path string) (File, error)
}

// Stats is the log's state for metrics and the admin UI.
type Stats struct {
	Written        uint64    `json:"written"`
	Failures       uint64    `json:"failures"`
	Checkpoints    uint64    `json:"checkpoints"`
	QueueDepth     int       `json:"queue_depth"`
	QueueCapacity  int       `json:"queue_capacity"`
	Failing        bool      `json:"failing"`
	LastError      string    `json:"last_error,omitempty"`
	HeadSeq        uint64    `json:"head_seq"`
	LastCheckpoint time.Time `json:"last_checkpoint,omitzero"`
	OnFailure      string    `json:"on_failure"`
	KeyID          string    `json:"key_id"`
}

// Log is the receipt log's writer. Record and Admit are safe for
// concurrent use and never do I/O; one goroutine writes.
type Log struct {
	o     Options
	keys  *Keys
	keyID string
	log   *slog.Logger
	q     chan Receipt
	full  chan struct{} // a batch is queued: the writer need not wait longer
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once

	trust atomic.Pointer[[]trustAt]
	users *userHasher

	written, failures, checkpoints atomic.Uint64
	failing                        atomic.Bool
	headSeq                        atomic.Uint64

	mu        sync.Mutex // guards the fields below (for Stats and Recent)
	lastErr   error
	lastCkpt  time.Time
	recent    []Receipt // ring of the last recentSize written
	recentPos int

	// Writer goroutine state.
	f       File
	fname   string
	fsize   int64
	fday    string
	seq     uint64
	head    string
	ckSeq   uint64
	pending []Receipt
	buf     []byte
	linger  *time.Timer // gather's timer, reused
	chain   chainHasher
}

// trustAt is a trust link and when it became current.
type trustAt struct {
	from time.Time
	link TrustLink
}

const (
	recentSize   = 50
	trustHistory = 16
	maxLine      = 64 << 10
)

// ErrUnavailable is returned by Admit while receipts cannot be written in
// Refuse mode.
var ErrUnavailable = errors.New("receipts cannot be written right now (receipts.on_failure: refuse)")

// Open loads or creates the keys, applies retention, finds the chain head
// and starts the writer. Close stops it with a final checkpoint.
func Open(o Options) (*Log, error) {
	if o.Dir == "" {
		return nil, errors.New("receipts: no directory")
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.QueueSize, 8192)
	def(&o.BatchMax, 512)
	o.BatchMax = min(o.BatchMax, o.QueueSize)
	if o.Interval <= 0 {
		o.Interval = time.Minute
	}
	if o.FlushDelay == 0 {
		o.FlushDelay = 10 * time.Millisecond
	}
	if o.MaxFileBytes <= 0 {
		o.MaxFileBytes = 64 << 20
	}
	if o.MaxAge == 0 {
		o.MaxAge = 400 * 24 * time.Hour
	}
	if o.MaxTotalBytes == 0 {
		o.MaxTotalBytes = 4 << 30
	}
	if o.RefuseWait <= 0 {
		o.RefuseWait = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Create == nil {
		o.Create = osCreate
	}
	keys, err := LoadOrCreateKeys(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("receipts: %w", err)
	}
	if err := statedir.CheckWritable(o.Dir); err != nil {
		return nil, fmt.Errorf("receipts: %w", err)
	}
	l := &Log{
		o: o, keys: keys, keyID: KeyID(keys.Signing.Public().(ed25519.PublicKey)), log: o.Logger,
		q: make(chan Receipt, o.QueueSize), full: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		recent: make([]Receipt, 0, recentSize), users: newUserHasher(keys.UserKey),
	}
	if removed, err := retain(o.Dir, "", o.Now(), o.MaxAge, o.MaxTotalBytes); err != nil {
		return nil, fmt.Errorf("receipts: %w", err)
	} else if len(removed) > 0 {
		l.log.Info("receipt retention removed old files", "files", removed)
	}
	if l.seq, l.head, err = lastState(o.Dir); err != nil {
		return nil, fmt.Errorf("receipts: %w", err)
	}
	l.ckSeq = l.seq
	l.headSeq.Store(l.seq)
	go l.run()
	return l, nil
}

// UserKey is the key HashUser takes for this log.
func (l *Log) UserKey() []byte { return l.keys.UserKey }

// HashUser is HashUser(l.UserKey(), instance, user), with the key's HMAC
// state prepared once; safe for concurrent use.
func (l *Log) HashUser(instance, user string) string { return l.users.hash(instance, user) }

// KeyID names the checkpoint signing key.
func (l *Log) KeyID() string { return l.keyID }

// SetTrust records that link became the current trust-log entry at from.
// Receipts take the link current when their request was sent.
func (l *Log) SetTrust(link TrustLink, from time.Time) {
	for {
		old := l.trust.Load()
		var hist []trustAt
		if old != nil {
			hist = *old
			if n := len(hist); n > 0 && hist[n-1].link.Hash == link.Hash {
				return
			}
		}
		next := append(hist[max(0, len(hist)-trustHistory+1):len(hist):len(hist)], trustAt{from, link})
		if l.trust.CompareAndSwap(old, &next) {
			return
		}
	}
}

// TrustAt returns the link current at t, if any.
func (l *Log) TrustAt(t time.Time) (TrustLink, bool) {
	p := l.trust.Load()
	if p == nil {
		return TrustLink{}, false
	}
	h := *p
	for i := len(h) - 1; i >= 0; i-- {
		if !h[i].from.After(t) {
			return h[i].link, true
		}
	}
	return TrustLink{}, false
}

// Admit reports whether a request may proceed: in Refuse mode it fails
// while receipts cannot be written or the queue is full.
func (l *Log) Admit() error {
	if l.o.OnFailure != Refuse {
		return nil
	}
	if l.failing.Load() || len(l.q) >= cap(l.q) {
		return ErrUnavailable
	}
	return nil
}

// Record queues r. Its Seq and Hash are assigned by the writer. When the
// queue is full it waits up to RefuseWait in Refuse mode, not at all in Warn
// mode; a receipt that cannot be queued is counted and logged as a failure
// (and in Refuse mode makes Admit refuse until writes succeed again).
func (l *Log) Record(r Receipt) {
	select {
	case l.q <- r:
		if len(l.q) >= l.o.BatchMax-1 { // with the one the writer holds, a batch
			select {
			case l.full <- struct{}{}:
			default:
			}
		}
		return
	default:
	}
	if l.o.OnFailure == Refuse {
		t := time.NewTimer(l.o.RefuseWait)
		defer t.Stop()
		select {
		case l.q <- r:
			return
		case <-t.C:
		}
	}
	l.fail(errors.New("receipt queue full: a receipt was lost"), 1)
}

// fail records n receipts that could not be written, or (n == 0) a write
// that failed and will be retried.
func (l *Log) fail(err error, n int) {
	l.failures.Add(1)
	first := !l.failing.Swap(true)
	l.mu.Lock()
	l.lastErr = err
	l.mu.Unlock()
	if n > 0 {
		l.log.Error("receipt not written", "error", err, "lost", n)
	} else if first {
		l.log.Error("receipts cannot be written; retrying", "error", err, "on_failure", l.mode())
	}
}

func (l *Log) mode() string {
	if l.o.OnFailure == Warn {
		return "warn"
	}
	return "refuse"
}

// Stats returns counters and state.
func (l *Log) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := Stats{
		Written: l.written.Load(), Failures: l.failures.Load(), Checkpoints: l.checkpoints.Load(),
		QueueDepth: len(l.q), QueueCapacity: cap(l.q), Failing: l.failing.Load(),
		HeadSeq: l.headSeq.Load(), LastCheckpoint: l.lastCkpt, OnFailure: l.mode(), KeyID: l.keyID,
	}
	if l.lastErr != nil && s.Failing {
		s.LastError = l.lastErr.Error()
	}
	return s
}

// Recent returns the last receipts written, newest first.
func (l *Log) Recent() []Receipt {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Receipt, 0, len(l.recent))
	for i := 1; i <= len(l.recent); i++ {
		out = append(out, l.recent[(l.recentPos-i+len(l.recent))%len(l.recent)])
	}
	return out
}

// Dir is the receipts directory.
func (l *Log) Dir() string { return l.o.Dir }

// PublicKeyPath is the exported checkpoint public key.
func (l *Log) PublicKeyPath() string { return filepath.Join(l.o.Dir, PublicKeyFile) }

// Close writes what is queued, a final checkpoint, and stops the writer.
// Call it after the proxy has drained.
func (l *Log) Close() error {
	l.once.Do(func() { close(l.stop) })
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failing.Load() && l.lastErr != nil {
		return fmt.Errorf("receipts: %w", l.lastErr)
	}
	return nil
}
