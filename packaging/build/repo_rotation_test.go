package build_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Rotating the release key as packaging/README.md describes: a release
// signed by the old key publishes the next key beside it (-also-trust);
// clients that fetched the keyring again (the documented refresh) keep
// updating once releases are signed by the new key; a client that did not
// is refused.
func TestKeyRotation(t *testing.T) {
	b := packages(t)
	oldKey, newKey := releaseKeys(t)
	oldS, newS := signer(t, oldKey), signer(t, newKey)
	dir := t.TempDir()
	pub := func(name string, s interface {
		PublicKey(context.Context, bool) ([]byte, error)
	}) string {
		key, err := s.PublicKey(context.Background(), true)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, key, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	oldPub, newPub := pub("old.asc", oldS), pub("new.asc", newS)

	web := filepath.Join(dir, "web")
	url := serve(t, web)
	apt, stale, dnf := clientRoot(t), clientRoot(t), dnfRoot(t)
	publish(t, oldS, web, url, "", b.v1["deb"], b.v1["rpm"])
	mustDoc(t, apt, "apt-add", url)
	mustDoc(t, stale, "apt-add", url)
	mustDoc(t, dnf, "dnf-add", url)

	// The announcement: still signed by the old key, keyring with both.
	if err := oldS.AlsoTrust(context.Background(), newPub); err != nil {
		t.Fatal(err)
	}
	publish(t, oldS, web, url, "", b.v1["deb"], b.v1["rpm"])
	mustDoc(t, apt, "apt-key-refresh", url)
	mustDoc(t, dnf, "dnf-key-refresh", url)

	// The switch: 1.2.3 signed by the new key, the old one still published.
	if err := newS.AlsoTrust(context.Background(), oldPub); err != nil {
		t.Fatal(err)
	}
	publish(t, newS, web, url, "", b.v1["deb"], b.v1["rpm"], b.v2["deb"], b.v2["rpm"])
	mustDoc(t, apt, "apt-upgrade", url)
	if v := debVersion(apt); v != "1.2.3-1" {
		t.Errorf("apt client after the switch: %q, want 1.2.3-1", v)
	}
	mustDoc(t, dnf, "dnf-upgrade", url)
	if v := rpmVersion(dnf); v != "1.2.3-1" {
		t.Errorf("dnf client after the switch: %q, want 1.2.3-1", v)
	}
	// apt refuses the new index but, for a repository it has used before,
	// only warns and keeps the previous one: no upgrade happens.
	out, _ := runDoc(t, stale, "apt-upgrade", url)
	if !strings.Contains(out, "NO_PUBKEY") || !strings.Contains(out, "The repository is not updated") {
		t.Errorf("a client without the new key was not refused:\n%s", out)
	}
	if v := debVersion(stale); v != "1.2.2-1" {
		t.Errorf("stale client: %q, want 1.2.2-1 kept", v)
	}
}
