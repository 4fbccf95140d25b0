package envelope

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"testing"

	"github.com/duo-confidential/duo-confidential/internal/testutil"
)

func buildForm(t *testing.T, build func(w *multipart.Writer)) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	build(w)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), w.Boundary()
}

type formPart struct {
	name, filename, data string
}

func readParts(t *testing.T, body []byte, contentType string) []formPart {
	t.Helper()
	_, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		t.Fatal(err)
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	var out []formPart
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(p)
		out = append(out, formPart{p.FormName(), p.FileName(), string(data)})
	}
}

func TestMultipartRoundTrip(t *testing.T) {
	audio := []byte("RIFF\x00\x01binary\r\n--not-a-boundary")
	body, boundary := buildForm(t, func(w *multipart.Writer) {
		_ = w.WriteField("model", "whisper")
		_ = w.WriteField("language", "de")
		_ = w.WriteField("language", "en") // only the first value counts
		_ = w.WriteField("stream", "true")
		fw, _ := w.CreateFormFile("file", "speech.wav")
		_, _ = fw.Write(audio)
		_ = w.WriteField("prompt", "hello")
	})
	c, err := newSessionWithRand(testSecret, &countReader{})
	if err != nil {
		t.Fatal(err)
	}
	wire, ct, err := c.EncryptMultipart(body, boundary, TranscriptionFormPlain)
	if err != nil {
		t.Fatal(err)
	}
	testutil.Golden(t, "testdata/golden/transcription_form.txt", append([]byte(ct+"\n"), wire...))
	parts := readParts(t, wire, ct)
	names := []string{"language", "model", "prompt", "stream", "file"}
	if len(parts) != len(names) {
		t.Fatalf("parts %+v", parts)
	}
	for i, p := range parts {
		if p.name != names[i] {
			t.Fatalf("part %d is %q", i, p.name)
		}
	}
	if parts[1].data != "whisper" || parts[3].data != "true" || parts[4].filename != "file" {
		t.Fatalf("plain parts changed: %+v", parts)
	}
	// Seqs: language=0, prompt=1, then files: file=2.
	for i, seq := range map[int]uint32{0: 0, 2: 1, 4: 2} {
		e, err := ParseEnvelope([]byte(parts[i].data))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.Open(vecKey, seq); err != nil {
			t.Fatalf("%s not at seq %d", parts[i].name, seq)
		}
	}
	srv := NewServerSession(lookupFor(testSecret))
	plain, pct, err := srv.DecryptMultipart(wire, mustBoundary(t, ct), TranscriptionFormPlain)
	if err != nil {
		t.Fatal(err)
	}
	got := readParts(t, plain, pct)
	want := []formPart{{"language", "", "de"}, {"model", "", "whisper"}, {"prompt", "", "hello"}, {"stream", "", "true"}, {"file", "file", string(audio)}}
	if len(got) != len(want) {
		t.Fatalf("%+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("part %d: %+v want %+v", i, got[i], want[i])
		}
	}
	// The JSON response continues with the response counter from 0.
	enc, err := srv.EncryptJSON([]byte(`{"text":"hallo","duration":1.5}`), TranscriptionResponsePlain)
	if err != nil {
		t.Fatal(err)
	}
	if dec, err := c.DecryptJSON(enc, TranscriptionResponsePlain); err != nil || string(dec) != `{"text":"hallo","duration":1.5}` {
		t.Fatal(string(dec), err)
	}
	if _, _, err := c.EncryptMultipart(body, boundary, TranscriptionFormPlain); !errors.Is(err, ErrEncryptAfterDecrypt) {
		t.Fatal(err)
	}
}

func mustBoundary(t *testing.T, ct string) string {
	_, params, err := mime.ParseMediaType(ct)
	if err != nil {
		t.Fatal(err)
	}
	return params["boundary"]
}

func TestMultipartStrict(t *testing.T) {
	body, boundary := buildForm(t, func(w *multipart.Writer) {
		_ = w.WriteField("model", "whisper")
		_ = w.WriteField("language", "de")
	})
	srv := NewServerSession(lookupFor(testSecret))
	if _, _, err := srv.DecryptMultipart(body, boundary, TranscriptionFormPlain); !errors.Is(err, ErrNotEnvelope) {
		t.Fatal("plaintext form value accepted:", err)
	}
	c, _ := NewSession(testSecret)
	if _, _, err := c.EncryptMultipart([]byte("garbage"), "b", nil); !errors.Is(err, ErrMultipart) {
		t.Fatal(err)
	}
	if _, _, err := c.EncryptMultipart(body, "", nil); !errors.Is(err, ErrMultipart) {
		t.Fatal(err)
	}
}
