package gitlabconnect_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/duo-confidential/duo-confidential/gateway/gitlabconnect"
	"github.com/duo-confidential/duo-confidential/gateway/gitlabtest"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// golden compares got with testdata/name, after replacing the stand-in's
// random port.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	got = regexp.MustCompile(`http://127\.0\.0\.1:\d+`).ReplaceAll(got, []byte("http://gitlab.test"))
	got = regexp.MustCompile(`127\.0\.0\.1:\d+`).ReplaceAll(got, []byte("gitlab.test"))
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run with -update to accept):\n%s", name, got)
	}
}

func TestGoldenPlanApplyVerify(t *testing.T) {
	f := newFixture(t, gitlabtest.AdminOptions{})
	c := f.client(t, adminToken)
	tg := target()
	p, err := c.Plan(ctx(t), tg, nil)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	gitlabconnect.WritePlan(&b, p)
	golden(t, "plan-fresh.txt", b.Bytes())

	f.gl.FailAfterMutations(3)
	r := c.Apply(ctx(t), p, tg)
	b.Reset()
	gitlabconnect.WriteResult(&b, r)
	golden(t, "apply-gitlab-down.txt", b.Bytes())

	f.gl.SetDown(false)
	st := &gitlabconnect.State{}
	st.Record(c.GitLabURL(), p, r)
	connect(t, c, tg, st)
	v, err := c.Verify(ctx(t), tg, st.IDs(), st.Managed())
	if err != nil {
		t.Fatal(err)
	}
	b.Reset()
	gitlabconnect.WriteVerification(&b, v)
	golden(t, "verify-ok.txt", b.Bytes())
}
