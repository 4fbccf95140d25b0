package ui

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/duo-confidential/duo-confidential/internal/statedir"
)

// Password length bounds: bcrypt reads at most 72 bytes, and a short
// admin password falls to guessing despite the login rate limit.
const (
	MinPasswordLen = 12
	MaxPasswordLen = 72
	// DefaultPasswordCost is the bcrypt cost of stored hashes (~0.2 s).
	DefaultPasswordCost = 12
)

// ErrNoPassword means no admin password has been set.
var ErrNoPassword = errors.New("no admin password is set: run `duo-confidential admin set-password` on the appliance")

// WritePasswordFile stores the bcrypt hash of password at path (mode
// 0600, written atomically; the directory is created 0700). cost 0 means
// DefaultPasswordCost.
func WritePasswordFile(path string, password []byte, cost int) error {
	if n := len(password); n < MinPasswordLen || n > MaxPasswordLen {
		return fmt.Errorf("the admin password must be %d to %d bytes long (got %d)", MinPasswordLen, MaxPasswordLen, n)
	}
	if cost == 0 {
		cost = DefaultPasswordCost
	}
	h, err := bcrypt.GenerateFromPassword(password, cost)
	if err != nil {
		return fmt.Errorf("hash the admin password: %w", err)
	}
	// Create a missing directory 0700, but never re-mode an existing one
	// (password_file may live in /etc/duo-confidential).
	if dir := filepath.Dir(path); !exists(dir) {
		if err := statedir.EnsureDir(dir); err != nil {
			return fmt.Errorf("admin password directory: %w", err)
		}
	}
	if err := statedir.WriteFile(path, append(h, '\n'), statedir.SecretMode); err != nil {
		return fmt.Errorf("write the admin password hash: %w", err)
	}
	return nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// checkPassword compares password with the hash at path; the file is read
// every time, so `admin set-password` takes effect without a restart.
func checkPassword(path string, password []byte) (bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, ErrNoPassword
	}
	if err != nil {
		return false, fmt.Errorf("read the admin password hash: %w", err)
	}
	err = bcrypt.CompareHashAndPassword([]byte(strings.TrimSpace(string(b))), password)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, bcrypt.ErrMismatchedHashAndPassword):
		return false, nil
	default:
		return false, fmt.Errorf("admin password hash in %s is not a bcrypt hash; set it again with `duo-confidential admin set-password`: %w", path, err)
	}
}

// randomToken returns 32 random bytes, base64url-encoded.
func randomToken() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("crypto/rand failed: " + err.Error()) // never happens on supported systems
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// equalSecret compares two secrets in constant time.
func equalSecret(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// maxSessions bounds memory; the oldest session is dropped beyond it.
const maxSessions = 256

// sessionLifetime ends every session, used or not.
const sessionLifetime = 12 * time.Hour

// session is one signed-in browser.
type session struct {
	csrf          string
	created, seen time.Time
}

// sessions are kept in memory only: a restart signs everyone out.
type sessions struct {
	mu   sync.Mutex
	m    map[string]*session
	idle time.Duration
	now  func() time.Time
}

func (s *sessions) create() (string, *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if len(s.m) >= maxSessions {
		var oldest string
		for id, x := range s.m {
			if oldest == "" || x.created.Before(s.m[oldest].created) {
				oldest = id
			}
		}
		delete(s.m, oldest)
	}
	id := randomToken()
	x := &session{csrf: randomToken(), created: now, seen: now}
	s.m[id] = x
	return id, x
}

// get returns the live session id names, refreshing its idle timer.
func (s *sessions) get(id string) *session {
	if id == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	x := s.m[id]
	if x == nil {
		return nil
	}
	now := s.now()
	if now.Sub(x.seen) > s.idle || now.Sub(x.created) > sessionLifetime {
		delete(s.m, id)
		return nil
	}
	x.seen = now
	return x
}

func (s *sessions) delete(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
}

// Login rate limits: per client address, and for all clients together
// (a distributed guess), over a sliding window.
const (
	loginWindow       = 15 * time.Minute
	loginFailsPerAddr = 5
	loginFailsTotal   = 50
	maxLimiterEntries = 10000
)

// maxKnownGood bounds the addresses remembered for a successful sign-in.
const maxKnownGood = 256

// knownGoodFor is how long a successful sign-in exempts its address from
// the global limit.
const knownGoodFor = 24 * time.Hour

// limiter counts failed sign-ins. The per-address limit always applies.
// The global limit (a guess spread over many addresses) applies only to
// addresses that have failed recently themselves: an admin signing in from
// a fresh address, one that signed in successfully in the last day, from
// admin.allowed_networks or with a valid session is never locked out by
// someone else's failures.
type limiter struct {
	mu    sync.Mutex
	fails map[netip.Addr][]time.Time
	all   []time.Time
	good  map[netip.Addr]time.Time // last successful sign-in
	now   func() time.Time
}

// retryAfter reports how long addr must wait before trying again; 0 means
// it may try now. trusted exempts addr from the global limit.
func (l *limiter) retryAfter(addr netip.Addr, trusted bool) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.all = recent(l.all, now)
	f := recent(l.fails[addr], now)
	if len(f) == 0 {
		delete(l.fails, addr)
	} else {
		l.fails[addr] = f
	}
	var wait time.Duration
	if len(f) >= loginFailsPerAddr {
		wait = f[len(f)-loginFailsPerAddr].Add(loginWindow).Sub(now)
	}
	if g, ok := l.good[addr]; ok && now.Sub(g) < knownGoodFor {
		trusted = true
	}
	if !trusted && len(f) > 0 && len(l.all) >= loginFailsTotal {
		wait = max(wait, l.all[len(l.all)-loginFailsTotal].Add(loginWindow).Sub(now))
	}
	return max(wait, 0)
}

func (l *limiter) fail(addr netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if len(l.fails) >= maxLimiterEntries {
		for a, f := range l.fails {
			if len(recent(f, now)) == 0 {
				delete(l.fails, a)
			}
		}
	}
	if _, ok := l.fails[addr]; ok || len(l.fails) < maxLimiterEntries {
		l.fails[addr] = append(l.fails[addr], now)
	}
	l.all = append(l.all, now)
	// Only the last loginFailsTotal failures decide the global limit.
	if len(l.all) > loginFailsTotal {
		l.all = append(l.all[:0], l.all[len(l.all)-loginFailsTotal:]...)
	}
}

func (l *limiter) success(addr netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.fails, addr)
	now := l.now()
	if l.good == nil {
		l.good = map[netip.Addr]time.Time{}
	}
	if len(l.good) >= maxKnownGood {
		for a, t := range l.good {
			if now.Sub(t) >= knownGoodFor || len(l.good) >= maxKnownGood {
				delete(l.good, a)
			}
		}
	}
	l.good[addr] = now
}

// recent drops the times older than the window.
func recent(ts []time.Time, now time.Time) []time.Time {
	i := 0
	for i < len(ts) && now.Sub(ts[i]) >= loginWindow {
		i++
	}
	return ts[i:]
}
