package collateral

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/proxy/attest"
)

// fakeSource serves fixed items and counts calls; failing makes every call
// return a real (not "not found") error.
type fakeSource struct {
	name    string
	items   map[string]*attest.CollateralItem
	failing atomic.Bool
	calls   atomic.Int32
}

func (f *fakeSource) Collateral(_ context.Context, url string) (*attest.CollateralItem, error) {
	f.calls.Add(1)
	if f.failing.Load() {
		return nil, fmt.Errorf("%s: fetch %s: connection refused", f.name, url)
	}
	it, ok := f.items[url]
	if !ok {
		return nil, notFound(f.name, url)
	}
	c := copyItem(it)
	c.Source = f.name
	return c, nil
}

func TestChain(t *testing.T) {
	now := time.Now()
	first := &fakeSource{name: "first", items: map[string]*attest.CollateralItem{tcbURL: item(tcbURL, []byte("a"), now)}}
	second := &fakeSource{name: "second", items: map[string]*attest.CollateralItem{
		tcbURL: item(tcbURL, []byte("b"), now), qeURL: item(qeURL, []byte("q"), now)}}
	c := Chain{nil, first, second}
	ctx := context.Background()

	if it, err := c.Collateral(ctx, tcbURL); err != nil || it.Source != "first" {
		t.Errorf("tcb: %+v %v, want from first", it, err)
	}
	if it, err := c.Collateral(ctx, qeURL); err != nil || it.Source != "second" {
		t.Errorf("qe: %+v %v, want fall-through to second", it, err)
	}
	_, err := c.Collateral(ctx, pckCRLURL)
	if !errors.Is(err, attest.ErrCollateralNotFound) {
		t.Errorf("unknown everywhere: %v, want ErrCollateralNotFound", err)
	}

	// A real failure stops the chain and is reported as is.
	first.failing.Store(true)
	calls := second.calls.Load()
	_, err = c.Collateral(ctx, qeURL)
	if err == nil || errors.Is(err, attest.ErrCollateralNotFound) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("failing source: err = %v, want the fetch error", err)
	}
	if second.calls.Load() != calls {
		t.Error("chain fell through past a real error")
	}
}

func TestCachePersistsAndRefreshes(t *testing.T) {
	clock := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	path := filepath.Join(t.TempDir(), "state", "collateral.json")
	up := &fakeSource{name: SourceOnline, items: map[string]*attest.CollateralItem{
		tcbURL: item(tcbURL, tcbInfoJSON(clock, clock.Add(30*24*time.Hour)), clock),
		qeURL:  item(qeURL, qeIdentityJSON(clock, clock.Add(2*time.Hour)), clock),
	}}
	var mu sync.Mutex
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	c, err := OpenCache(CacheOptions{Path: path, Upstream: up, RefreshAfter: 24 * time.Hour, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if it, err := c.Collateral(ctx, tcbURL); err != nil || it.Source != SourceOnline {
		t.Fatalf("first fetch: %+v %v", it, err)
	}
	if _, err := c.Collateral(ctx, qeURL); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("cache file: %v %v", fi, err)
	}
	onDisk, err := Load(path)
	if err != nil || onDisk.Len() != 2 {
		t.Fatalf("persisted bundle: %v, %d items", err, onDisk.Len())
	}

	// A second cache on the same file serves from disk without fetching.
	up.calls.Store(0)
	c2, err := OpenCache(CacheOptions{Path: path, Upstream: up, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if it, err := c2.Collateral(ctx, tcbURL); err != nil || it.Source != SourceBundle || up.calls.Load() != 0 {
		t.Errorf("fresh cached item: %+v %v, %d upstream calls", it, err, up.calls.Load())
	}

	// Three hours on, the QE identity is past its nextUpdate: refetched.
	mu.Lock()
	clock = clock.Add(3 * time.Hour)
	mu.Unlock()
	up.items[qeURL] = item(qeURL, qeIdentityJSON(clock, clock.Add(30*24*time.Hour)), clock)
	if it, err := c2.Collateral(ctx, qeURL); err != nil || it.Source != SourceOnline {
		t.Errorf("expired item not refreshed: %+v %v", it, err)
	}

	// Two days on, upstream is down: the cached TCB info is still served.
	mu.Lock()
	clock = clock.Add(48 * time.Hour)
	mu.Unlock()
	up.failing.Store(true)
	if it, err := c2.Collateral(ctx, tcbURL); err != nil || it.Source != SourceBundle {
		t.Errorf("outage with cached item: %+v %v", it, err)
	}
	// …but a URL never cached surfaces the real error.
	if _, err := c2.Collateral(ctx, pckCRLURL); err == nil || errors.Is(err, attest.ErrCollateralNotFound) {
		t.Errorf("outage without cached item: err = %v, want the fetch error", err)
	}
}

func TestCacheConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "collateral.json")
	now := time.Now()
	up := &fakeSource{name: SourceOnline, items: map[string]*attest.CollateralItem{}}
	var urls []string
	for i := range 20 {
		u := fmt.Sprintf("https://kdsintf.amd.com/vcek/v1/Milan/%02x?blSPL=1&teeSPL=0&snpSPL=1&ucodeSPL=1", i)
		urls = append(urls, u)
		up.items[u] = item(u, []byte{byte(i)}, now)
	}
	c, err := OpenCache(CacheOptions{Path: path, Upstream: up})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		for _, u := range urls {
			wg.Go(func() {
				if _, err := c.Collateral(context.Background(), u); err != nil {
					t.Error(err)
				}
			})
		}
	}
	wg.Wait()
	b, err := Load(path)
	if err != nil || b.Len() != len(urls) {
		t.Fatalf("after concurrent fetches: %v, %d items", err, b.Len())
	}
}

func TestOpenCacheRejectsCorruptFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "collateral.json")
	_ = os.WriteFile(path, []byte("{broken"), 0o644)
	if _, err := OpenCache(CacheOptions{Path: path, Upstream: &fakeSource{}}); err == nil {
		t.Error("corrupt cache file accepted (it would be overwritten)")
	}
	if _, err := OpenCache(CacheOptions{Path: path}); err == nil {
		t.Error("cache without upstream accepted")
	}
}
