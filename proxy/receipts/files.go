package receipts

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// File is what the log writes receipts to; os.File in production, a
// failing one in tests.
type File interface {
	Write(p []byte) (int, error)
	Sync() error
	Truncate(size int64) error
	Close() error
}

// fileName names a receipt file by the last sequence number before it and
// its creation time, so names sort in chain order.
func fileName(seq uint64, t time.Time) string {
	return fmt.Sprintf("%s%012d-%s%s", filePrefix, seq, t.UTC().Format("20060102T150405.000000000Z"), fileSuffix)
}

// listFiles returns the receipt files in dir in chain order.
func listFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("list receipts in %s: %w", dir, err)
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if e.Type().IsRegular() && strings.HasPrefix(n, filePrefix) && strings.HasSuffix(n, fileSuffix) {
			out = append(out, n)
		}
	}
	slices.Sort(out) // fixed-width sequence, then time
	return out, nil
}

// lastState finds the chain head (sequence number and hash) at the end of
// the newest receipt file, ignoring a torn last line. It does not verify
// the chain: verification reports breaks, the writer only continues.
func lastState(dir string) (seq uint64, head string, err error) {
	files, err := listFiles(dir)
	if err != nil || len(files) == 0 {
		return 0, "", err
	}
	for i := len(files) - 1; i >= 0; i-- {
		b, err := os.ReadFile(filepath.Join(dir, files[i]))
		if err != nil {
			return 0, "", fmt.Errorf("read %s: %w", files[i], err)
		}
		found := false
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(make([]byte, 0, 4096), maxLine)
		for sc.Scan() {
			line := sc.Bytes()
			var probe struct {
				Kind string `json:"kind"`
				Seq  uint64 `json:"seq"`
				Prev string `json:"prev"`
				H    string `json:"h"`
			}
			if json.Unmarshal(line, &probe) != nil {
				continue // torn or damaged: verification reports it
			}
			switch probe.Kind {
			case kindStart:
				seq, head, found = probe.Seq, probe.Prev, true
			case "":
				if probe.H != "" {
					seq, head, found = probe.Seq, probe.H, true
				}
			}
		}
		if found {
			return seq, head, nil
		}
	}
	return 0, "", nil
}

// retain removes the oldest receipt files, never keep, while the files are
// older than maxAge (by modification time: the last receipt in them) or
// larger together than maxBytes. It returns the names removed.
func retain(dir, keep string, now time.Time, maxAge time.Duration, maxBytes int64) ([]string, error) {
	files, err := listFiles(dir)
	if err != nil {
		return nil, err
	}
	type fi struct {
		name string
		size int64
		mod  time.Time
	}
	var all []fi
	var total int64
	for _, n := range files {
		st, err := os.Stat(filepath.Join(dir, n))
		if err != nil {
			if errorsIsNotExist(err) {
				continue
			}
			return nil, err
		}
		all = append(all, fi{n, st.Size(), st.ModTime()})
		total += st.Size()
	}
	var removed []string
	for _, f := range all {
		if f.name == keep {
			break
		}
		old := maxAge > 0 && now.Sub(f.mod) > maxAge
		big := maxBytes > 0 && total > maxBytes
		if !old && !big {
			break // files are in order: the rest are newer
		}
		if err := os.Remove(filepath.Join(dir, f.name)); err != nil {
			return removed, fmt.Errorf("retention: remove %s: %w", f.name, err)
		}
		total -= f.size
		removed = append(removed, f.name)
	}
	return removed, nil
}

func errorsIsNotExist(err error) bool { return err != nil && os.IsNotExist(err) }

// osCreate creates a receipt file (0600, exclusive).
func osCreate(path string) (File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
}
