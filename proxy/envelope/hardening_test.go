package envelope

import (
	"errors"
	"mime/multipart"
	"testing"
)

// TestReflectedRequestIsRefused: a relay that answers with the request's
// own envelopes (same key, nonce and sequence numbers) must not get them
// accepted as the model's answer.
func TestReflectedRequestIsRefused(t *testing.T) {
	c, _ := newPair(t)
	enc, err := c.EncryptJSON([]byte(`{"model":"m","messages":"secret prompt"}`), ChatRequestPlain)
	if err != nil {
		t.Fatal(err)
	}
	// The request's only encrypted member is at sequence 0, like the
	// first response member would be.
	reflected := []byte(`{"id":"x","choices":` + string(rawField(t, enc, "messages")) + `}`)
	if _, err := c.DecryptJSON(reflected, ChatResponsePlain); !errors.Is(err, ErrReflected) {
		t.Fatalf("reflected envelope: err %v, want ErrReflected", err)
	}
}

func TestDecryptedCountsEncryptedFields(t *testing.T) {
	c, s := newPair(t)
	enc, err := c.EncryptJSON([]byte(`{"model":"m","messages":[]}`), ChatRequestPlain)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.DecryptJSON(enc, ChatRequestPlain); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DecryptJSON([]byte(`{"id":"only plain"}`), ChatResponsePlain); err != nil {
		t.Fatal(err)
	}
	if c.Decrypted() != 0 {
		t.Fatalf("Decrypted %d after a plain-only answer", c.Decrypted())
	}
	resp, err := s.EncryptJSON([]byte(`{"id":"x","choices":[]}`), ChatResponsePlain)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.DecryptJSON(resp, ChatResponsePlain); err != nil {
		t.Fatal(err)
	}
	if c.Decrypted() != 1 {
		t.Fatalf("Decrypted %d, want 1", c.Decrypted())
	}
}

// TestMultipartPlainNamesCarryNoContent: a file under a plain-listed name
// would go upstream unencrypted; a plain field given twice is read
// differently by different readers (first wins here, last in Go's
// FormValue on some paths).
func TestMultipartPlainNamesCarryNoContent(t *testing.T) {
	for name, tc := range map[string]struct {
		build func(w *multipart.Writer)
		want  error
	}{
		"file named model": {func(w *multipart.Writer) {
			_ = w.WriteField("model", "whisper")
			fw, _ := w.CreateFormFile("stream", "secret.txt")
			_, _ = fw.Write([]byte("secret audio"))
		}, ErrPlainFile},
		"model twice": {func(w *multipart.Writer) {
			_ = w.WriteField("model", "whisper")
			_ = w.WriteField("model", "secret prompt")
		}, ErrDuplicateField},
		"model as value and file": {func(w *multipart.Writer) {
			_ = w.WriteField("model", "whisper")
			fw, _ := w.CreateFormFile("model", "m.txt")
			_, _ = fw.Write([]byte("secret"))
		}, ErrPlainFile},
	} {
		t.Run(name, func(t *testing.T) {
			body, boundary := buildForm(t, tc.build)
			c, _ := newPair(t)
			if _, _, err := c.EncryptMultipart(body, boundary, TranscriptionFormPlain); !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
}
