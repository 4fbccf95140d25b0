package sandbox

import (
	"bytes"
	"cmp"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/duo-confidential/duo-confidential/proxy/envelope"
)

// maxFormParts bounds the parts read from a transcription form.
const maxFormParts = 100

// transcriptionForm is a plaintext /v1/audio/transcriptions form: the first
// value of each field and the "file" part.
type transcriptionForm struct {
	values map[string]string
	file   []byte
}

func boundaryOf(ctx *fasthttp.RequestCtx) (string, error) {
	mt, params, err := mime.ParseMediaType(string(ctx.Request.Header.ContentType()))
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		return "", errors.New("transcriptions: Content-Type must be multipart/form-data with a boundary")
	}
	return params["boundary"], nil
}

// parseForm reads a plaintext multipart body (first value per name wins,
// as upstream's mapper keeps it).
func parseForm(body []byte, boundary string) (*transcriptionForm, error) {
	f := &transcriptionForm{values: map[string]string{}}
	r := multipart.NewReader(bytes.NewReader(body), boundary)
	for i := 0; ; i++ {
		p, err := r.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil || i == maxFormParts {
			return nil, errors.New("transcriptions: malformed multipart body")
		}
		name := p.FormName()
		data, err := io.ReadAll(io.LimitReader(p, MaxRequestBody))
		if err != nil {
			return nil, errors.New("transcriptions: malformed multipart body")
		}
		if name == "file" {
			if f.file == nil {
				f.file = data
			}
		} else if _, dup := f.values[name]; !dup && name != "" {
			f.values[name] = string(data)
		}
	}
	if f.file == nil {
		return nil, errors.New("transcriptions: missing file part")
	}
	return f, nil
}

func parsePlainForm(ctx *fasthttp.RequestCtx) (*transcriptionForm, error) {
	boundary, err := boundaryOf(ctx)
	if err != nil {
		return nil, err
	}
	return parseForm(ctx.PostBody(), boundary)
}

// decryptForm decrypts the encrypted form with the session and parses the
// plaintext result.
func decryptForm(ctx *fasthttp.RequestCtx, sess *envelope.ServerSession) (*transcriptionForm, error) {
	boundary, err := boundaryOf(ctx)
	if err != nil {
		return nil, err
	}
	plain, ct, err := sess.DecryptMultipart(ctx.PostBody(), boundary, envelope.TranscriptionFormPlain)
	if err != nil {
		return nil, err
	}
	_, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return nil, err
	}
	return parseForm(plain, params["boundary"])
}

// transcribe answers a transcription: JSON (json, verbose_json) or, with
// stream=true, SSE transcription chunks.
func (c *call) transcribe(ctx *fasthttp.RequestCtx, f *transcriptionForm) {
	model := f.values["model"]
	if !c.checkModel(ctx, model) {
		return
	}
	text := transcript(f.file)
	seconds := max(1, len(f.file)/32000) // as if 16 kHz 16-bit mono
	if f.values["stream"] == "true" {
		r := &reply{words: strings.Fields(text), finish: "stop"}
		c.stream(ctx, &genRequest{Model: model}, r)
		return
	}
	b := make([]byte, 0, 256)
	b = append(b, `{"text":`...)
	b = appendString(b, text)
	switch f.values["response_format"] {
	case "", "json":
	case "verbose_json":
		b = append(b, `,"task":"transcribe","language":`...)
		b = appendString(b, cmp.Or(f.values["language"], "en"))
		b = append(b, `,"duration":`...)
		b = appendInt(b, int64(seconds))
		b = append(b, `,"segments":[{"id":0,"start":0,"end":`...)
		b = appendInt(b, int64(seconds))
		b = append(b, `,"text":`...)
		b = appendString(b, text)
		b = append(b, "}]"...)
	default:
		c.modelError(ctx, fasthttp.StatusBadRequest, "BadRequestError",
			"the sandbox (like the Privatemode proxy) supports only json and verbose_json transcriptions")
		return
	}
	b = append(b, `,"usage":{"type":"duration","seconds":`...)
	b = appendInt(b, int64(seconds))
	b = append(b, "}}"...)
	c.send(ctx, fasthttp.StatusOK, c.rt.respPlain, b)
}
