package envelope

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"mime/multipart"
	"slices"
)

// maxFormParts bounds the parts read from one form (Go's ReadForm default is 1000).
const maxFormParts = 1000

// form holds the first value and the first file per field name, as
// upstream's r.FormValue / r.FormFile see them.
type form struct {
	values, files         map[string][]byte
	valueNames, fileNames []string
	dups                  []string // names that occur more than once
}

func parseForm(body []byte, boundary string) (*form, error) {
	if boundary == "" {
		return nil, ErrMultipart
	}
	f := &form{values: map[string][]byte{}, files: map[string][]byte{}}
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	for parts := 0; ; parts++ {
		if parts >= maxFormParts {
			return nil, fmt.Errorf("%w: more than %d parts", ErrMultipart, maxFormParts)
		}
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrMultipart, err)
		}
		name := p.FormName()
		if name == "" {
			continue
		}
		data, err := io.ReadAll(p)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrMultipart, err)
		}
		dst, names := f.values, &f.valueNames
		if p.FileName() != "" {
			dst, names = f.files, &f.fileNames
		}
		_, inValues := f.values[name]
		_, inFiles := f.files[name]
		if inValues || inFiles {
			f.dups = append(f.dups, name)
		}
		if _, seen := dst[name]; !seen {
			dst[name] = data
			*names = append(*names, name)
		}
	}
	slices.Sort(f.valueNames)
	slices.Sort(f.fileNames)
	return f, nil
}

// checkPlainParts refuses forms whose plain-listed fields could carry
// content upstream unencrypted or be read differently by different
// readers: a file under a plain name, or a plain name given twice.
func checkPlainParts(f *form, plain Fields) error {
	for _, name := range f.fileNames {
		if plain.Has(name) {
			return fmt.Errorf("%w: %q", ErrPlainFile, name)
		}
	}
	for _, name := range f.dups {
		if plain.Has(name) {
			return fmt.Errorf("%w: %q", ErrDuplicateField, name)
		}
	}
	return nil
}

// newFormWriter draws the output boundary from r so golden tests are deterministic.
func newFormWriter(buf *bytes.Buffer, r io.Reader) (*multipart.Writer, error) {
	var raw [16]byte
	if _, err := io.ReadFull(r, raw[:]); err != nil {
		return nil, fmt.Errorf("envelope: reading randomness: %w", err)
	}
	w := multipart.NewWriter(buf)
	if err := w.SetBoundary(hex.EncodeToString(raw[:])); err != nil {
		return nil, err
	}
	return w, nil
}

// EncryptMultipart re-creates a multipart form per privatemode-wire.md §6: plain values
// stay as they are; non-plain values in ascending name order, then files in
// ascending name order, are encrypted (seq continuing) and written as the
// quoted envelope text; only the first value/file per name is kept and
// files are re-created with filename = field name. The boundary of the new
// body is random; newContentType carries it.
func (s *Session) EncryptMultipart(body []byte, boundary string, plain Fields) (newBody []byte, newContentType string, err error) {
	if err := s.x.checkFailed(); err != nil {
		return nil, "", err
	}
	if s.x.decUsed {
		return nil, "", ErrEncryptAfterDecrypt
	}
	f, err := parseForm(body, boundary)
	if err != nil {
		return nil, "", err
	}
	if err := checkPlainParts(f, plain); err != nil {
		return nil, "", err
	}
	n := 0
	for _, names := range [][]string{f.valueNames, f.fileNames} {
		for _, name := range names {
			if !plain.Has(name) {
				n++
			}
		}
	}
	if s.x.encSeq+uint64(n) > 1<<32 {
		return nil, "", ErrSequenceExhausted
	}
	var buf bytes.Buffer
	w, err := newFormWriter(&buf, s.x.rand)
	if err != nil {
		return nil, "", err
	}
	sc := getScratch()
	defer putScratch(sc)
	if err := s.x.readIVs(sc, n); err != nil {
		return nil, "", err
	}
	k := 0
	seal := func(data []byte) []byte {
		iv := sc.ivs[k*nonceSize : (k+1)*nonceSize]
		out := s.x.c.appendSeal(nil, iv, int64(s.x.encSeq)+int64(k), data, sc)
		s.x.rememberIV(iv)
		k++
		return out
	}
	for _, name := range f.valueNames {
		v := f.values[name]
		if !plain.Has(name) {
			v = seal(v)
		}
		if err := w.WriteField(name, string(v)); err != nil {
			return nil, "", err
		}
	}
	for _, name := range f.fileNames {
		v := f.files[name]
		if !plain.Has(name) {
			v = seal(v)
		}
		fw, err := w.CreateFormFile(name, name)
		if err != nil {
			return nil, "", err
		}
		if _, err := fw.Write(v); err != nil {
			return nil, "", err
		}
	}
	if err := w.Close(); err != nil {
		return nil, "", err
	}
	s.x.encSeq += uint64(n)
	return buf.Bytes(), w.FormDataContentType(), nil
}

// DecryptMultipart mirrors EncryptMultipart on the server: non-plain values,
// then files, in name order must be envelopes of one exchange; it returns a
// plaintext form (files named after their field) under a fresh boundary.
func (s *ServerSession) DecryptMultipart(body []byte, boundary string, plain Fields) (newBody []byte, newContentType string, err error) {
	if s.x.encUsed {
		return nil, "", ErrDecryptAfterEncrypt
	}
	if err := s.x.checkFailed(); err != nil {
		return nil, "", err
	}
	s.x.decUsed = true
	newBody, newContentType, err = s.decryptMultipart(body, boundary, plain)
	if err != nil {
		return nil, "", s.x.fail(err)
	}
	return newBody, newContentType, nil
}

func (s *ServerSession) decryptMultipart(body []byte, boundary string, plain Fields) ([]byte, string, error) {
	f, err := parseForm(body, boundary)
	if err != nil {
		return nil, "", err
	}
	var buf bytes.Buffer
	w, err := newFormWriter(&buf, s.x.rand)
	if err != nil {
		return nil, "", err
	}
	sc := getScratch()
	defer putScratch(sc)
	seq := s.x.decSeq
	open := func(data []byte) ([]byte, error) {
		e, ok := parseEnv(data)
		if !ok {
			return nil, ErrNotEnvelope
		}
		if err := s.x.checkEnvelope(&e); err != nil {
			return nil, err
		}
		if seq >= 1<<32 {
			return nil, ErrSequenceExhausted
		}
		pt, err := s.x.c.appendOpen(nil, &e, int64(seq), sc)
		seq++
		return pt, err
	}
	for _, name := range f.valueNames {
		v := f.values[name]
		if !plain.Has(name) {
			if v, err = open(v); err != nil {
				return nil, "", err
			}
		}
		if err := w.WriteField(name, string(v)); err != nil {
			return nil, "", err
		}
	}
	for _, name := range f.fileNames {
		v := f.files[name]
		if !plain.Has(name) {
			if v, err = open(v); err != nil {
				return nil, "", err
			}
		}
		fw, err := w.CreateFormFile(name, name)
		if err != nil {
			return nil, "", err
		}
		if _, err := fw.Write(v); err != nil {
			return nil, "", err
		}
	}
	if err := w.Close(); err != nil {
		return nil, "", err
	}
	s.x.decSeq = seq
	return buf.Bytes(), w.FormDataContentType(), nil
}
