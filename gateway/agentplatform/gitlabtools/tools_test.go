package gitlabtools

import (
	"strings"
	"testing"
)

// TestTailKeepsTheEnd: a long job log keeps its end (where failures are)
// at a UTF-8 boundary, and says how much was cut.
func TestTailKeepsTheEnd(t *testing.T) {
	log := strings.Repeat("ä", 10) + "ERROR: Job failed"
	got := tail(log, 20)
	if !strings.HasSuffix(got, "ERROR: Job failed") || !strings.HasPrefix(got, "[log truncated: the last 19 of 37 bytes]\n") {
		t.Fatalf("%q", got)
	}
	if tail("short", 20) != "short" {
		t.Fatal("short log changed")
	}
}

// TestCatalogue: names and privileges are GitLab's; only
// create_merge_request writes.
func TestCatalogue(t *testing.T) {
	for _, tl := range Tools() {
		write := tl.Name == "create_merge_request"
		if tl.Write != write || (write && tl.Privilege != "read_write_gitlab") || (!write && tl.Privilege != "read_only_gitlab") {
			t.Errorf("%s: write %v privilege %s", tl.Name, tl.Write, tl.Privilege)
		}
	}
}
