package envelope

import (
	"bytes"
	"testing"
)

// TestAppendDecryptJSONMember: the member's raw value comes back with the
// same plaintext AppendDecryptJSON gives; a missing member is nil, and a
// failed decryption returns neither.
func TestAppendDecryptJSONMember(t *testing.T) {
	c, srv := newPair(t)
	req, err := c.EncryptJSON([]byte(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`), ChatRequestPlain)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.DecryptJSON(req, ChatRequestPlain); err != nil {
		t.Fatal(err)
	}
	answer := []byte(`{"id":"x","choices":[{"message":{"content":"ok"}}],"usage":{"prompt_tokens":3, "completion_tokens":4}}`)
	var wire [2][]byte
	for i := range wire {
		if wire[i], err = srv.EncryptJSON(answer, ChatResponsePlain); err != nil {
			t.Fatal(err)
		}
	}
	plain, usage, err := c.AppendDecryptJSONMember([]byte("x"), wire[0], ChatResponsePlain, "usage")
	if err != nil || !jsonEqual(t, plain[1:], answer) || string(usage) != `{"prompt_tokens":3, "completion_tokens":4}` {
		t.Fatalf("plain %s, usage %s, %v", plain, usage, err)
	}
	plain, none, err := c.AppendDecryptJSONMember(nil, wire[1], ChatResponsePlain, "missing")
	if err != nil || none != nil || !jsonEqual(t, plain, answer) {
		t.Fatalf("plain %s, value %s, %v", plain, none, err)
	}
	// Replayed: decryption fails, nothing is returned.
	if plain, v, err := c.AppendDecryptJSONMember(nil, wire[1], ChatResponsePlain, "usage"); err == nil || plain != nil || v != nil {
		t.Fatalf("replayed answer: %s %s %v", plain, v, err)
	}
	if bytes.Contains(wire[0], []byte(`"ok"`)) {
		t.Fatal("content was not encrypted")
	}
}
