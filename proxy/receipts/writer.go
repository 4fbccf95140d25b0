package receipts

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"
)

// retryEvery is how often a failed write is retried.
const retryEvery = time.Second

// run is the writer goroutine: it batches queued receipts into one write,
// signs checkpoints on a timer, and retries failed writes; while a batch
// is pending it takes nothing more from the queue, so memory stays bounded
// by the queue and one batch. After the first receipt of a batch it waits
// FlushDelay without receiving, so senders fill the buffered queue without
// waking it, then takes everything queued at once.
func (l *Log) run() {
	defer close(l.done)
	tick := time.NewTicker(l.o.Interval)
	defer tick.Stop()
	retry := time.NewTicker(retryEvery)
	defer retry.Stop()
	for {
		if len(l.pending) > 0 {
			select {
			case <-retry.C:
				l.flush()
			case <-tick.C:
			case <-l.stop:
				l.shutdown()
				return
			}
			continue
		}
		select {
		case r := <-l.q:
			l.pending = append(l.pending, r)
			l.gather()
			l.drain()
			l.flush()
		case <-tick.C:
			if err := l.checkpoint(); err != nil {
				l.fail(err, 0)
			}
		case <-l.stop:
			l.shutdown()
			return
		}
	}
}

// gather waits FlushDelay for more receipts to queue, less when a whole
// batch is queued or the log is closing.
func (l *Log) gather() {
	select {
	case <-l.full: // from a batch already taken
	default:
	}
	if l.o.FlushDelay < 0 || len(l.q) >= l.o.BatchMax-1 {
		return
	}
	if l.linger == nil {
		l.linger = time.NewTimer(l.o.FlushDelay)
	} else {
		l.linger.Reset(l.o.FlushDelay)
	}
	select {
	case <-l.linger.C:
	case <-l.full:
		l.linger.Stop()
	case <-l.stop:
		l.linger.Stop()
	}
}

// drain moves queued receipts into the pending batch, up to BatchMax.
func (l *Log) drain() {
	for len(l.pending) < l.o.BatchMax {
		select {
		case r := <-l.q:
			l.pending = append(l.pending, r)
		default:
			return
		}
	}
}

// shutdown writes everything queued (retrying briefly) and a checkpoint.
func (l *Log) shutdown() {
	deadline := time.Now().Add(5 * time.Second)
	for {
		l.drain()
		if len(l.pending) == 0 {
			break
		}
		if !l.flush() && time.Now().After(deadline) {
			l.fail(fmt.Errorf("shutdown: %d receipts could not be written", len(l.pending)+len(l.q)), len(l.pending)+len(l.q))
			break
		}
		if len(l.pending) > 0 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if err := l.checkpoint(); err != nil {
		l.fail(err, 0)
	}
	if l.f != nil {
		_ = l.f.Close()
		l.f = nil
	}
}

// flush writes the pending batch; it reports whether it succeeded.
func (l *Log) flush() bool {
	if len(l.pending) == 0 {
		return true
	}
	now := l.o.Now()
	if err := l.rotateIfDue(now); err != nil {
		l.fail(err, 0)
		return false
	}
	buf := l.buf[:0]
	seq, head := l.seq, l.head
	for i := range l.pending {
		r := &l.pending[i]
		seq++
		r.Seq = seq
		var err error
		if buf, head, err = appendReceipt(buf, r, head, &l.chain); err != nil {
			l.fail(err, 0)
			return false
		}
	}
	if err := l.write(buf, l.o.SyncEveryBatch); err != nil {
		l.fail(err, 0)
		return false
	}
	l.seq, l.head = seq, head
	l.headSeq.Store(seq)
	l.written.Add(uint64(len(l.pending)))
	l.mu.Lock()
	for _, r := range l.pending {
		if len(l.recent) < recentSize {
			l.recent = append(l.recent, r)
			l.recentPos = len(l.recent) % recentSize
		} else {
			l.recent[l.recentPos] = r
			l.recentPos = (l.recentPos + 1) % recentSize
		}
	}
	l.mu.Unlock()
	if cap(buf) <= 1<<20 {
		l.buf = buf
	}
	l.pending = l.pending[:0]
	if l.failing.Swap(false) {
		l.log.Info("receipts are being written again")
	}
	return true
}

// write appends b to the current file. On failure the file is cut back to
// its previous size (so no partial line stays where the next write would
// follow it) and closed; the next write starts a new file.
func (l *Log) write(b []byte, sync bool) error {
	if l.f == nil {
		if err := l.openFile(l.o.Now()); err != nil {
			return err
		}
	}
	n, err := l.f.Write(b)
	if err == nil && sync {
		err = l.f.Sync()
	}
	if err != nil {
		if n > 0 {
			_ = l.f.Truncate(l.fsize)
		}
		_ = l.f.Close()
		l.f = nil
		return fmt.Errorf("write %s: %w", l.fname, err)
	}
	l.fsize += int64(n)
	return nil
}

// openFile starts a new file with a Start line carrying the chain over.
func (l *Log) openFile(now time.Time) error {
	name := fileName(l.seq, now)
	f, err := l.o.Create(filepath.Join(l.o.Dir, name))
	if err != nil {
		return fmt.Errorf("create receipt file: %w", err)
	}
	line, _ := json.Marshal(Start{Kind: kindStart, Seq: l.seq, Prev: l.head, Time: now.UTC()})
	line = append(line, '\n')
	if _, err := f.Write(line); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	l.f, l.fname, l.fsize, l.fday = f, name, int64(len(line)), now.UTC().Format(time.DateOnly)
	return nil
}

// rotateIfDue ends the current file with a checkpoint when it is too big
// or from another day, and applies retention.
func (l *Log) rotateIfDue(now time.Time) error {
	if l.f == nil || (l.fsize < l.o.MaxFileBytes && l.fday == now.UTC().Format(time.DateOnly)) {
		return nil
	}
	if err := l.checkpoint(); err != nil {
		return err
	}
	if l.f != nil {
		if err := l.f.Close(); err != nil {
			l.log.Warn("close receipt file", "file", l.fname, "error", err)
		}
		l.f = nil
	}
	removed, err := retain(l.o.Dir, "", now, l.o.MaxAge, l.o.MaxTotalBytes)
	if len(removed) > 0 {
		l.log.Info("receipt retention removed old files", "files", removed)
	}
	if err != nil {
		l.log.Warn("receipt retention", "error", err)
	}
	return l.openFile(now)
}

// checkpoint signs the chain head when receipts were added since the last
// one, and fsyncs the file.
func (l *Log) checkpoint() error {
	if l.seq == l.ckSeq {
		return nil
	}
	now := l.o.Now().UTC()
	c := Checkpoint{Kind: kindCheckpoint, Seq: l.seq, Head: l.head, Time: now, KeyID: l.keyID}
	c.Sig = b64.EncodeToString(ed25519.Sign(l.keys.Signing, checkpointMessage(c.Seq, c.Head, c.Time)))
	line, _ := json.Marshal(c)
	if err := l.write(append(line, '\n'), true); err != nil {
		return err
	}
	l.ckSeq = l.seq
	l.checkpoints.Add(1)
	l.mu.Lock()
	l.lastCkpt = now
	l.mu.Unlock()
	return nil
}
