package doctor

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/internal/testutil"
)

func fixed(r checkResult) func(context.Context) checkResult {
	return func(context.Context) checkResult { return r }
}

func TestDoctorRunner(t *testing.T) {
	notConfigured := func() *checkResult { r := skip("feature off"); return &r }
	tests := []struct {
		name    string
		checks  []doctorCheck
		offline bool
		want    []checkResult
	}{
		{
			name: "continues after a failure; dependants are skipped",
			checks: []doctorCheck{
				{name: "a", run: fixed(fail("fix a", "a broke"))},
				{name: "b", run: fixed(pass("b fine"))},
				{name: "c", needs: []string{"a"}, run: fixed(pass("never"))},
				{name: "d", needs: []string{"b"}, run: fixed(warn("fix d", "d meh"))},
				{name: "e", needs: []string{"d"}, run: fixed(pass("e fine"))},
			},
			want: []checkResult{
				{Name: "a", Status: statusFail, Detail: "a broke", Fix: "fix a"},
				{Name: "b", Status: statusPass, Detail: "b fine"},
				{Name: "c", Status: statusSkip, Detail: "not checked: a failed"},
				{Name: "d", Status: statusWarn, Detail: "d meh", Fix: "fix d"},
				{Name: "e", Status: statusPass, Detail: "e fine"},
			},
		},
		{
			name:    "offline skips online checks and their dependants with the same reason",
			offline: true,
			checks: []doctorCheck{
				{name: "local", run: fixed(pass("ok"))},
				{name: "net", online: true, run: fixed(pass("never"))},
				{name: "after", needs: []string{"net"}, online: true, run: fixed(pass("never"))},
			},
			want: []checkResult{
				{Name: "local", Status: statusPass, Detail: "ok"},
				{Name: "net", Status: statusSkip, Detail: "--offline: not checked"},
				{Name: "after", Status: statusSkip, Detail: "--offline: not checked"},
			},
		},
		{
			name:    "applies wins over offline",
			offline: true,
			checks: []doctorCheck{
				{name: "net", online: true, applies: notConfigured, run: fixed(pass("never"))},
				{name: "after", needs: []string{"net"}, run: fixed(pass("never"))},
			},
			want: []checkResult{
				{Name: "net", Status: statusSkip, Detail: "feature off"},
				{Name: "after", Status: statusSkip, Detail: "feature off"},
			},
		},
		{
			name: "a panic is a failure, not a crash",
			checks: []doctorCheck{
				{name: "boom", run: func(context.Context) checkResult { panic("nil map") }},
				{name: "next", run: fixed(pass("still runs"))},
			},
			want: []checkResult{
				{Name: "boom", Status: statusFail, Detail: "internal error: nil map", Fix: "this is a bug in doctor; please report it with the output above"},
				{Name: "next", Status: statusPass, Detail: "still runs"},
			},
		},
		{
			name: "a check that outlives its timeout says so",
			checks: []doctorCheck{
				{name: "slow", timeout: time.Millisecond, run: func(ctx context.Context) checkResult {
					<-ctx.Done()
					return fail("wait less", "no answer")
				}},
			},
			want: []checkResult{
				{Name: "slow", Status: statusFail, Detail: "no answer (timed out after 1ms)", Fix: "wait less"},
			},
		},
		{
			name:   "a check without a verdict is a bug",
			checks: []doctorCheck{{name: "empty", run: fixed(checkResult{})}},
			want:   []checkResult{{Name: "empty", Status: statusFail, Detail: "the check returned no verdict", Fix: "this is a bug in doctor; please report it"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := runChecks(context.Background(), tt.checks, tt.offline)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d results, want %d: %+v", len(got), len(tt.want), got)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("result %d:\n got %+v\nwant %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

// sampleResults has every status, a multi-line detail and a multi-line fix.
var sampleResults = []checkResult{
	{Name: "config", Status: statusPass, Detail: "/etc/duo-confidential/config.yaml is valid"},
	{Name: "state-dir", Status: statusFail, Detail: "/var/lib/duo-confidential has mode 0755, want 0700\n/var/lib/duo-confidential/local-ca/ca.key has mode 0644, want 0600",
		Fix: "chmod 700 /var/lib/duo-confidential\nchmod 600 /var/lib/duo-confidential/local-ca/ca.key"},
	{Name: "collateral", Status: statusWarn, Detail: "no collateral bundle yet", Fix: "import one"},
	{Name: "proxy-completion", Status: statusSkip, Detail: "--offline: not checked"},
}

func TestDoctorFormat(t *testing.T) {
	var text bytes.Buffer
	if err := writeText(&text, sampleResults); err != nil {
		t.Fatal(err)
	}
	testutil.Golden(t, "testdata/doctor/format.txt", text.Bytes())

	var js bytes.Buffer
	if err := writeJSON(&js, sampleResults); err != nil {
		t.Fatal(err)
	}
	testutil.Golden(t, "testdata/doctor/format.json", js.Bytes())
	var back []checkResult
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back) != len(sampleResults) || back[1] != sampleResults[1] {
		t.Errorf("JSON does not round-trip: %v %+v", err, back)
	}
	if strings.Contains(js.String(), `"fix": ""`) {
		t.Error("an empty fix is printed in JSON")
	}
}
