package collateral

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sync"
	"time"

	"github.com/duo-confidential/duo-confidential/proxy/attest"
)

// Chain tries its sources in order and returns the first item found. It
// moves on only when a source reports attest.ErrCollateralNotFound: any
// other error (a failed download, a TLS error) is returned at once, because
// hiding it behind a later "not found" would leave the operator guessing.
// Nil entries are skipped.
type Chain []attest.CollateralSource

// Collateral implements attest.CollateralSource.
func (c Chain) Collateral(ctx context.Context, url string) (*attest.CollateralItem, error) {
	for _, s := range c {
		if s == nil {
			continue
		}
		it, err := s.Collateral(ctx, url)
		if err == nil {
			return it, nil
		}
		if !errors.Is(err, attest.ErrCollateralNotFound) {
			return nil, err
		}
	}
	return nil, notFound("collateral sources", url)
}

// CacheOptions configures a Cache.
type CacheOptions struct {
	// Path is the bundle file in the state directory that the cache reads at
	// open and rewrites after every successful fetch.
	Path string
	// Upstream is where missing or aging items come from, normally Online.
	Upstream attest.CollateralSource
	// RefreshAfter is the age from which an item is fetched again; zero
	// means 24 hours. An item past its nextUpdate is always fetched again.
	RefreshAfter time.Duration
	// Logger receives a warning when a refresh fails and the cached item is
	// served instead; nil discards.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Cache serves collateral from a bundle file and fetches from Upstream what
// the file lacks or what has aged past RefreshAfter, writing every fetched
// item back to the file. A connected appliance thereby builds its own
// bundle and keeps working through short vendor outages. It is safe for
// concurrent use.
type Cache struct {
	opts   CacheOptions
	bundle *Bundle
	saveMu sync.Mutex // serialises file writes; bundle has its own lock
}

// OpenCache loads the bundle at opts.Path (a missing file is an empty
// bundle; a corrupt one is an error, since overwriting it would destroy
// what the operator imported).
func OpenCache(opts CacheOptions) (*Cache, error) {
	if opts.Upstream == nil {
		return nil, errors.New("collateral cache: no upstream source")
	}
	if opts.RefreshAfter <= 0 {
		opts.RefreshAfter = 24 * time.Hour
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	b, err := Load(opts.Path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		b = New()
	case err != nil:
		return nil, fmt.Errorf("collateral cache: %w", err)
	}
	return &Cache{opts: opts, bundle: b}, nil
}

// Bundle returns the cache's in-memory bundle (shared, not a copy).
func (c *Cache) Bundle() *Bundle { return c.bundle }

// Collateral returns the cached item while it is fresh, otherwise fetches it
// from upstream and persists it. When the fetch fails but an older item is
// cached, that item is served and the failure logged: the verifier still
// applies its own maximum age and nextUpdate checks to it, so availability
// is gained without accepting anything the offline path would reject.
func (c *Cache) Collateral(ctx context.Context, url string) (*attest.CollateralItem, error) {
	cached, err := c.bundle.Collateral(ctx, url)
	if err != nil && !errors.Is(err, attest.ErrCollateralNotFound) {
		return nil, err
	}
	now := c.opts.Now()
	if cached != nil && !c.needsRefresh(cached, now) {
		return cached, nil
	}
	it, err := c.opts.Upstream.Collateral(ctx, url)
	if err != nil {
		if cached != nil {
			c.opts.Logger.Warn("collateral refresh failed; serving cached item", "url", url,
				"fetched_at", cached.FetchedAt, "err", err)
			return cached, nil
		}
		return nil, err
	}
	if err := c.store(it); err != nil {
		// The fetched item is good; failing verification because the disk is
		// full would be worse than not caching it.
		c.opts.Logger.Warn("collateral cache not written", "url", url, "err", err)
	}
	return it, nil
}

func (c *Cache) needsRefresh(it *attest.CollateralItem, now time.Time) bool {
	if now.Sub(it.FetchedAt) >= c.opts.RefreshAfter {
		return true
	}
	info := Describe(it)
	return !info.NextUpdate.IsZero() && !now.Before(info.NextUpdate)
}

func (c *Cache) store(it *attest.CollateralItem) error {
	c.saveMu.Lock()
	defer c.saveMu.Unlock()
	ch, err := c.bundle.Put(it)
	if err != nil {
		return err
	}
	if ch.Kind == Unchanged || ch.Kind == KeptNewer {
		return nil
	}
	return c.bundle.Save(c.opts.Path)
}
