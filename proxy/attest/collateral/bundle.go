package collateral

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/duo-confidential/duo-confidential/internal/statedir"
	"github.com/duo-confidential/duo-confidential/proxy/attest"
)

// Format is the version tag of the bundle file format this package reads and
// writes; any other value is rejected rather than half-understood.
const Format = "duo-confidential-collateral/1"

// MaxBundleSize bounds a bundle file; a full TDX+SNP bundle is a few hundred
// KiB, so anything near this limit is not a bundle.
const MaxBundleSize = 32 << 20

// wireBundle is the JSON form of a bundle file.
type wireBundle struct {
	Format  string     `json:"format"`
	Created string     `json:"created"`
	Items   []wireItem `json:"items"`
}

// wireItem is one stored response. The body is base64 (standard, padded) and
// sha256 is the hex digest of the decoded body, which catches truncation and
// hand edits; authenticity comes from the vendor signatures inside the body.
type wireItem struct {
	URL       string              `json:"url"`
	Header    map[string][]string `json:"header,omitempty"`
	Body      string              `json:"body"`
	FetchedAt string              `json:"fetched_at"`
	SHA256    string              `json:"sha256"`
}

// Bundle is a set of collateral items keyed by URL. It is safe for
// concurrent use and serves items without ever touching the network.
type Bundle struct {
	mu      sync.RWMutex
	created time.Time
	items   map[string]*attest.CollateralItem
}

// New returns an empty bundle.
func New() *Bundle {
	return &Bundle{items: map[string]*attest.CollateralItem{}}
}

// Parse decodes a bundle file strictly: unknown format version or fields,
// duplicate URLs, bad base64, digest mismatches, missing timestamps or
// oversized input are errors.
func Parse(data []byte) (*Bundle, error) {
	if len(data) > MaxBundleSize {
		return nil, fmt.Errorf("collateral bundle: %d bytes exceeds the %d byte limit", len(data), MaxBundleSize)
	}
	var w wireBundle
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return nil, fmt.Errorf("collateral bundle: decode JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("collateral bundle: trailing data after the JSON object")
	}
	if w.Format != Format {
		return nil, fmt.Errorf("collateral bundle: format %q is not supported (want %q); use a duo-confidential release that writes this format", w.Format, Format)
	}
	b := New()
	if w.Created != "" {
		t, err := time.Parse(time.RFC3339, w.Created)
		if err != nil {
			return nil, fmt.Errorf("collateral bundle: created: %w", err)
		}
		b.created = t
	}
	for i, wi := range w.Items {
		it, err := decodeItem(wi)
		if err != nil {
			return nil, fmt.Errorf("collateral bundle: item %d (%s): %w", i, wi.URL, err)
		}
		if _, dup := b.items[it.URL]; dup {
			return nil, fmt.Errorf("collateral bundle: item %d: duplicate URL %s", i, it.URL)
		}
		b.items[it.URL] = it
	}
	return b, nil
}

func decodeItem(wi wireItem) (*attest.CollateralItem, error) {
	if _, err := checkURL(wi.URL); err != nil {
		return nil, err
	}
	body, err := base64.StdEncoding.Strict().DecodeString(wi.Body)
	if err != nil {
		return nil, fmt.Errorf("body: bad base64: %w", err)
	}
	want, err := hex.DecodeString(wi.SHA256)
	if err != nil || len(want) != sha256.Size {
		return nil, fmt.Errorf("sha256: %q is not a hex SHA-256 digest", wi.SHA256)
	}
	if got := sha256.Sum256(body); !bytes.Equal(got[:], want) {
		return nil, fmt.Errorf("sha256 mismatch: body hashes to %x, bundle says %s (corrupted or edited)", got, wi.SHA256)
	}
	if wi.FetchedAt == "" {
		return nil, errors.New("fetched_at: missing")
	}
	fetched, err := time.Parse(time.RFC3339, wi.FetchedAt)
	if err != nil {
		return nil, fmt.Errorf("fetched_at: %w", err)
	}
	var h http.Header
	for k, vs := range wi.Header {
		ck := http.CanonicalHeaderKey(k)
		if _, dup := h[ck]; dup {
			return nil, fmt.Errorf("header: %q given twice in different case", ck)
		}
		if h == nil {
			h = http.Header{}
		}
		h[ck] = append([]string(nil), vs...)
	}
	return &attest.CollateralItem{URL: wi.URL, Header: h, Body: body, FetchedAt: fetched, Source: SourceBundle}, nil
}

// Load reads and parses the bundle file at path, refusing files larger than
// MaxBundleSize. A missing file yields an error wrapping fs.ErrNotExist.
func Load(path string) (*Bundle, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load collateral bundle: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxBundleSize+1))
	if err != nil {
		return nil, fmt.Errorf("load collateral bundle %s: %w", path, err)
	}
	b, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	return b, nil
}

// Marshal encodes the bundle, items sorted by URL so equal bundles encode
// identically.
func (b *Bundle) Marshal() ([]byte, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	w := wireBundle{Format: Format, Items: make([]wireItem, 0, len(b.items))}
	if !b.created.IsZero() {
		w.Created = b.created.UTC().Format(time.RFC3339)
	}
	for _, u := range b.urlsLocked() {
		it := b.items[u]
		sum := sha256.Sum256(it.Body)
		w.Items = append(w.Items, wireItem{
			URL:       it.URL,
			Header:    it.Header,
			Body:      base64.StdEncoding.EncodeToString(it.Body),
			FetchedAt: it.FetchedAt.UTC().Format(time.RFC3339),
			SHA256:    hex.EncodeToString(sum[:]),
		})
	}
	// No HTML escaping: URLs keep a readable "&" for operators who diff
	// bundles.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(w); err != nil {
		return nil, fmt.Errorf("encode collateral bundle: %w", err)
	}
	return buf.Bytes(), nil
}

// Save stamps the bundle's creation time and writes it atomically to path
// inside the state directory with mode 0644 (collateral is public data).
// It uses statedir.WriteFile, which also restricts path's directory to 0700,
// so use WriteFile for paths outside the state directory.
func (b *Bundle) Save(path string) error {
	data, err := b.stamp()
	if err != nil {
		return err
	}
	if err := statedir.WriteFile(path, data, statedir.PublicMode); err != nil {
		return fmt.Errorf("save collateral bundle: %w", err)
	}
	return nil
}

// WriteFile stamps the bundle's creation time and writes it atomically to
// path with mode 0644 without touching the directory's mode: an exported
// bundle goes wherever the operator says (a USB stick, the working
// directory), which statedir.WriteFile would chmod to 0700.
func (b *Bundle) WriteFile(path string) (err error) {
	data, err := b.stamp()
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write collateral bundle %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(statedir.PublicMode); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write collateral bundle %s: set mode: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write collateral bundle %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write collateral bundle %s: sync: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write collateral bundle %s: close: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write collateral bundle %s: rename: %w", path, err)
	}
	return nil
}

func (b *Bundle) stamp() ([]byte, error) {
	b.mu.Lock()
	b.created = time.Now().UTC().Truncate(time.Second)
	b.mu.Unlock()
	return b.Marshal()
}

// Created returns when the bundle was last written (zero for a new bundle).
func (b *Bundle) Created() time.Time {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.created
}

// Collateral returns a copy of the item stored for url with Source "bundle",
// or an error wrapping attest.ErrCollateralNotFound.
func (b *Bundle) Collateral(_ context.Context, url string) (*attest.CollateralItem, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	it, ok := b.items[url]
	if !ok {
		return nil, notFound(SourceBundle, url)
	}
	c := copyItem(it)
	c.Source = SourceBundle
	return c, nil
}

// Len returns the number of items.
func (b *Bundle) Len() int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return len(b.items)
}

// URLs returns the stored URLs in sorted order.
func (b *Bundle) URLs() []string {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.urlsLocked()
}

func (b *Bundle) urlsLocked() []string {
	out := make([]string, 0, len(b.items))
	for u := range b.items {
		out = append(out, u)
	}
	sort.Strings(out)
	return out
}

// Items returns copies of all items, sorted by URL.
func (b *Bundle) Items() []*attest.CollateralItem {
	b.mu.RLock()
	defer b.mu.RUnlock()
	out := make([]*attest.CollateralItem, 0, len(b.items))
	for _, u := range b.urlsLocked() {
		out = append(out, copyItem(b.items[u]))
	}
	return out
}

// ChangeKind says what Put or Merge did with one item.
type ChangeKind string

// Change kinds.
const (
	Added     ChangeKind = "added"     // the URL was not in the bundle
	Updated   ChangeKind = "updated"   // the new item was fetched later and replaced the old one
	Unchanged ChangeKind = "unchanged" // same fetched_at and body
	KeptNewer ChangeKind = "kept"      // the bundle already held a later fetch, which stays
)

// Change is what happened to one URL in Put or Merge.
type Change struct {
	URL  string     `json:"url"`
	Kind ChangeKind `json:"change"`
	// Old and New are the fetch times of the stored and the offered item
	// (Old is zero for Added).
	Old time.Time `json:"old_fetched_at,omitzero"`
	New time.Time `json:"new_fetched_at"`
}

// Put stores a copy of it unless the bundle already holds a later fetch of
// the same URL; it rejects items without an https URL or a fetch time.
func (b *Bundle) Put(it *attest.CollateralItem) (Change, error) {
	if it == nil {
		return Change{}, errors.New("collateral bundle: put nil item")
	}
	if _, err := checkURL(it.URL); err != nil {
		return Change{}, fmt.Errorf("collateral bundle: put: %w", err)
	}
	if it.FetchedAt.IsZero() {
		return Change{}, fmt.Errorf("collateral bundle: put %s: no fetch time", it.URL)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.putLocked(it), nil
}

// putLocked applies "newer fetched_at wins". Times are compared at second
// precision because that is what the file keeps; otherwise a re-import of
// the same fetch would look newer than itself.
func (b *Bundle) putLocked(it *attest.CollateralItem) Change {
	nu := it.FetchedAt.UTC().Truncate(time.Second)
	ch := Change{URL: it.URL, New: nu}
	old, ok := b.items[it.URL]
	if ok {
		ch.Old = old.FetchedAt
		switch {
		case nu.Before(old.FetchedAt):
			ch.Kind = KeptNewer
			return ch
		case nu.Equal(old.FetchedAt) && bytes.Equal(old.Body, it.Body):
			ch.Kind = Unchanged
			return ch
		case nu.Equal(old.FetchedAt):
			// Same second, different body: keep what we have so that
			// merging is deterministic and an import cannot flip-flop.
			ch.Kind = KeptNewer
			return ch
		}
		ch.Kind = Updated
	} else {
		ch.Kind = Added
	}
	c := copyItem(it)
	c.FetchedAt = nu
	c.Source = SourceBundle
	b.items[it.URL] = c
	return ch
}

// Merge adds other's items to b, the later fetched_at winning per URL, and
// reports one Change per item of other, sorted by URL.
func (b *Bundle) Merge(other *Bundle) []Change {
	if other == b {
		return nil
	}
	items := other.Items()
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]Change, 0, len(items))
	for _, it := range items {
		out = append(out, b.putLocked(it))
	}
	return out
}
