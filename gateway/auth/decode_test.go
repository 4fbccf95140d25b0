package auth

import (
	"encoding/json"
	"reflect"
	"testing"
)

// decodeSeeds are GitLab-shaped headers and payloads and JSON edge cases.
var decodeSeeds = []string{
	`{"alg":"RS256","kid":"Zx4bgb5sE1Uq3V8bXy6uX2o6pX6vQm4p1p3a8b9c0dE","typ":"JWT"}`,
	`{"jti":"0b8c7c4e-0d1f-4f57-9a83-6f1a2b3c4d5e","iss":"https://gitlab.example.com","sub":"5f1c2a4e","aud":["gitlab-ai-gateway","gitlab-duo-workflow-service"],"iat":1760000000,"nbf":1759999995,"exp":1760003600,"gitlab_realm":"self-managed","scopes":["complete_code","duo_chat"],"skip_usage_cutoff":false}`,
	`{}`, ` { } `, `{"a":[]}`, `{"a":null}`, `{"a":true,"b":false}`, `{"a":1,"a":"x"}`,
	`{"a":-0}`, `{"a":0.5e-3}`, `{"a":1E+2}`, `{"a":1e400}`, `{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":-}`,
	`{"a":"\u0041"}`, `{"a":"\/"}`, `{"a":"é"}`, "{\"a\":\"\xff\"}", "{\"a\":\"\x7f\"}", "{\"a\":\"\t\"}",
	`{"a":{"b":1}}`, `{"a":[[1]]}`, `{"a":[1,"x",null,true]}`, `{"a":[1,]}`, `{"a":1,}`, `{,}`,
	`{"a":1} x`, `{"a":1}{}`, `null`, `[]`, `"x"`, `{"a" 1}`, `{"a":1 "b":2}`, `{"a":tru}`, `{"a":nul}`,
	`{"ISS":"x","iss":"y"}`, "{\"a\":1}\n", "\r\n\t{\"a\":1}", `{"a":"b`, `{"a`, `{`, ``,
	`{"a":"\ud800"}`, `{"a":"\u00e9\ud83d\ude00"}`,
}

func TestDecodeObjectSeeds(t *testing.T) {
	for _, s := range decodeSeeds {
		checkDecodeObject(t, []byte(s))
	}
}

// FuzzDecodeObject checks decodeObject (go-json, for speed on the
// per-request path) against encoding/json: the same outcome and value, so
// the faster decoder never accepts or reads a token differently.
func FuzzDecodeObject(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(checkDecodeObject)
}

func checkDecodeObject(t *testing.T, b []byte) {
	var want map[string]any
	werr := json.Unmarshal(b, &want)
	got, err := decodeObject(b)
	if (err == nil) != (werr == nil) {
		t.Fatalf("decodeObject(%q) error %v, encoding/json %v", b, err, werr)
	}
	if err == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("decodeObject(%q) = %#v, encoding/json: %#v", b, got, want)
	}
}
