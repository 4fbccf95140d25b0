package flowconfig

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

var update = flag.Bool("update", false, "rewrite golden files")

// testRegistry holds prompts at several versions so ranges pick one.
func testRegistry(t testing.TB) *Registry {
	r := NewRegistry()
	for _, x := range []struct{ id, v string }{
		{"review_explore", "1.0.0"}, {"review_explore", "1.3.1"}, {"review_explore", "2.0.0"},
		{"review_publish", "2.0.0"}, {"review_publish", "2.1.4"}, {"review_publish", "2.2.0"},
	} {
		if err := r.Add(x.v, Prompt{ID: x.id, System: x.id + " system " + x.v, User: "{{goal}}"}); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if string(want) != string(got) {
		t.Errorf("%s differs:\n got: %s\nwant: %s", path, got, want)
	}
}

// TestGoldenValid: valid configs parse to the checked-in form (prompt
// ranges resolved to the highest matching version, inputs normalised,
// unknown keys listed).
func TestGoldenValid(t *testing.T) {
	files, _ := filepath.Glob("testdata/valid/*.yaml")
	if len(files) == 0 {
		t.Fatal("no valid configs")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := Parse(data, Options{Prompts: testRegistry(t)})
			if err != nil {
				t.Fatal(err)
			}
			out, _ := json.MarshalIndent(cfg, "", "  ")
			golden(t, strings.TrimSuffix(f, ".yaml")+".golden.json", append(out, '\n'))
		})
	}
}

// TestGoldenInvalid: each invalid config fails with the checked-in text,
// which names the key.
func TestGoldenInvalid(t *testing.T) {
	files, _ := filepath.Glob("testdata/invalid/*.yaml")
	if len(files) < 20 {
		t.Fatalf("only %d invalid configs", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Parse(data, Options{Prompts: testRegistry(t)})
			var fe *Error
			if !errors.As(err, &fe) {
				t.Fatalf("want *Error, got %v", err)
			}
			golden(t, strings.TrimSuffix(f, ".yaml")+".err", []byte(err.Error()+"\n"))
		})
	}
}

func TestRangesPickHighestMatch(t *testing.T) {
	r := testRegistry(t)
	for _, c := range []struct{ id, rng, want string }{
		{"review_explore", "^1.0.0", "1.3.1"}, {"review_explore", ">=1.0.0", "2.0.0"}, {"review_explore", "1.0.0", "1.0.0"},
		{"review_publish", "~2.1", "2.1.4"}, {"review_publish", "^2.0.0", "2.2.0"},
	} {
		p, err := r.Resolve(c.id, c.rng)
		if err != nil || p.Version != c.want {
			t.Errorf("%s %s: %v %v, want %s", c.id, c.rng, p.Version, err, c.want)
		}
	}
	if err := r.Add("1.0.0", Prompt{ID: "review_explore"}); err == nil {
		t.Error("duplicate version accepted")
	}
	if err := r.Add("one", Prompt{ID: "x"}); err == nil {
		t.Error("bad version accepted")
	}
}

// TestFromStruct: the inline flowConfig of a startRequest parses the same
// as its YAML (numbers such as max_cycles come back from structpb as
// floats).
func TestFromStruct(t *testing.T) {
	for _, f := range []string{"testdata/valid/inline_router.yaml", "testdata/valid/approval.yaml"} {
		data, _ := os.ReadFile(f)
		want, err := Parse(data, Options{})
		if err != nil {
			t.Fatal(err)
		}
		raw := map[string]any{}
		if err := json.Unmarshal(mustJSON(t, data), &raw); err != nil {
			t.Fatal(err)
		}
		s, err := structpb.NewStruct(raw)
		if err != nil {
			t.Fatal(err)
		}
		got, err := FromStruct(s, Options{})
		if err != nil {
			t.Fatal(err)
		}
		gb, _ := json.Marshal(got)
		wb, _ := json.Marshal(want)
		if string(gb) != string(wb) {
			t.Fatalf("%s: struct form differs:\n%s\n%s", f, gb, wb)
		}
	}
	if _, err := FromStruct(nil, Options{}); err == nil {
		t.Fatal("nil flowConfig accepted")
	}
}

// TestMaxCyclesOffsets: an offset the config leaves out is derived as
// GitLab derives it (ten cycles, or half a smaller limit, at least one;
// none for a one-cycle limit).
func TestMaxCyclesOffsets(t *testing.T) {
	for threshold, want := range map[int]int{280: 10, 20: 10, 19: 9, 4: 2, 3: 1, 2: 1, 1: -1} {
		got := derivedOffset(threshold)
		switch {
		case want < 0 && got != nil:
			t.Errorf("threshold %d: offset %d, want none", threshold, *got)
		case want >= 0 && (got == nil || *got != want):
			t.Errorf("threshold %d: offset %v, want %d", threshold, got, want)
		}
	}
}

func TestNextFollowsConditions(t *testing.T) {
	data, _ := os.ReadFile("testdata/valid/inline_router.yaml")
	cfg, err := Parse(data, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for answer, want := range map[string]string{"bug": "bug", "feature": "feature", "other": End} {
		got := cfg.Next("classify", func(p string) (string, bool) { return answer, p == "classify.final_answer" })
		if got != want {
			t.Errorf("%s → %s, want %s", answer, got, want)
		}
	}
	if got := cfg.Next("bug", nil); got != End {
		t.Errorf("bug → %s", got)
	}
}

func TestLimits(t *testing.T) {
	big := make([]byte, MaxConfigBytes+1)
	if _, err := Parse(big, Options{}); err == nil || !strings.Contains(err.Error(), "bytes") {
		t.Fatalf("oversize: %v", err)
	}
	var b strings.Builder
	b.WriteString("version: v1\nenvironment: ambient\ncomponents:\n")
	for i := 0; i <= MaxComponents; i++ {
		b.WriteString("  - {name: c, type: DeterministicStepComponent, tool_name: t}\n")
	}
	if _, err := Parse([]byte(b.String()), Options{}); err == nil || !strings.Contains(err.Error(), "components: has") {
		t.Fatalf("too many components: %v", err)
	}
}

// mustJSON converts YAML test data to JSON through the parser's own reader.
func mustJSON(t *testing.T, yamlData []byte) []byte {
	t.Helper()
	var doc any
	if err := yaml.Unmarshal(yamlData, &doc); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
