package testutil

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestLogBufferConcurrentWrites(t *testing.T) {
	var b LogBuffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				b.Write([]byte("x"))
				_ = b.String()
			}
		}()
	}
	wg.Wait()
	if b.Len() != 800 || b.String() != strings.Repeat("x", 800) {
		t.Fatalf("got %d bytes", b.Len())
	}
}

func TestClockFiresWaitersWhenDue(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	c := NewClock(start)
	ch := c.After(time.Minute)
	if d := c.NextWait(t); d != time.Minute {
		t.Fatalf("NextWait = %v, want 1m", d)
	}
	c.Advance(59 * time.Second)
	select {
	case <-ch:
		t.Fatal("fired before it was due")
	default:
	}
	c.Advance(time.Second)
	select {
	case got := <-ch:
		if !got.Equal(start.Add(time.Minute)) {
			t.Fatalf("fired with %v", got)
		}
	default:
		t.Fatal("did not fire when due")
	}
	c.Set(start)
	if !c.Now().Equal(start) {
		t.Fatalf("Now = %v after Set", c.Now())
	}
}

func TestGoldenComparesAndDiffs(t *testing.T) {
	if Updating() {
		t.Skip("-update given")
	}
	path := filepath.Join(t.TempDir(), "g.txt")
	if err := os.WriteFile(path, []byte("a\nb\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	Golden(t, path, []byte("a\nb\n")) // equal: no failure
	if d := DiffLines("a\nb\n", "a\nc\n"); d != "line 2:\n- b\n+ c" {
		t.Fatalf("DiffLines = %q", d)
	}
}

func TestCAIssuesVerifiableLeavesAndCRLs(t *testing.T) {
	ca := NewCA(t, "test CA", time.Hour)
	now := time.Now()
	der, _ := ca.Leaf(t, []string{"gitlab.example.test", "127.0.0.1"}, now.Add(-time.Minute), now.Add(time.Minute))
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca.PEM) {
		t.Fatal("CA PEM does not parse")
	}
	for _, name := range []string{"gitlab.example.test", "127.0.0.1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: name}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "other.test"}); err == nil {
		t.Error("leaf verified for a name it does not hold")
	}
	crl, err := x509.ParseRevocationList(ca.CRL(t, now, now.Add(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(ca.Cert); err != nil {
		t.Fatalf("CRL signature: %v", err)
	}
}
