package attest

import (
	"encoding/binary"
	"fmt"

	"github.com/google/go-tdx-guest/abi"
)

// DCAP quote v5 layout (Intel TDX DCAP Quoting Library API, appendix "Quote
// format v5"): the v4 header, then a body descriptor (type, size) and a body
// of that type, then the same signature data as v4.
const (
	tdxHeaderSize     = 0x30
	tdxV5DescSize     = 6 // body type (2) + body size (4)
	tdxBody10Size     = 584
	tdxBody15Size     = 648
	tdxBodyTypeTD10   = 2 // TDX 1.0 TD report body
	tdxBodyTypeTD15   = 3 // TDX 1.5 TD report body: TD 1.0 body + TEE_TCB_SVN2 + MR_SERVICETD
	tdxQuoteVersionV5 = 5
)

// tdxV5 is what a v5 quote carries beyond its v4-shaped view.
type tdxV5 struct {
	bodyType  uint16
	signedLen int    // bytes covered by the attestation-key signature
	svn2      []byte // TEE_TCB_SVN2 (TD 1.5 body only)
	serviceTD []byte // MR_SERVICETD (TD 1.5 body only)
}

// parseTDXQuoteV5 checks the v5 framing and returns the v4-shaped view the
// vendor parser understands (the header with version 4, the TD 1.0 part of
// the body and the unchanged signature data) plus the v5-only values. The
// view is used for parsing the signature data and reading the TD 1.0
// fields; the quote signature is always checked over the original bytes.
func parseTDXQuoteV5(raw []byte) (view []byte, v5 tdxV5, err error) {
	if len(raw) < tdxHeaderSize+tdxV5DescSize {
		return nil, v5, fmt.Errorf("v5 quote is %d bytes, shorter than its header and body descriptor", len(raw))
	}
	if v := binary.LittleEndian.Uint16(raw[0:2]); v != tdxQuoteVersionV5 {
		return nil, v5, fmt.Errorf("quote version %d, want 5", v)
	}
	if t := binary.LittleEndian.Uint32(raw[4:8]); t != abi.TeeTDX {
		return nil, v5, fmt.Errorf("TEE type 0x%x is not TDX (0x81)", t)
	}
	v5.bodyType = binary.LittleEndian.Uint16(raw[tdxHeaderSize : tdxHeaderSize+2])
	size := binary.LittleEndian.Uint32(raw[tdxHeaderSize+2 : tdxHeaderSize+tdxV5DescSize])
	var want uint32
	switch v5.bodyType {
	case tdxBodyTypeTD10:
		want = tdxBody10Size
	case tdxBodyTypeTD15:
		want = tdxBody15Size
	default:
		return nil, v5, fmt.Errorf("body type %d is not a TD report body (2: TDX 1.0, 3: TDX 1.5)", v5.bodyType)
	}
	if size != want {
		return nil, v5, fmt.Errorf("body type %d has size %d, want %d", v5.bodyType, size, want)
	}
	bodyStart := tdxHeaderSize + tdxV5DescSize
	bodyEnd := bodyStart + int(size)
	if len(raw) < bodyEnd+4 {
		return nil, v5, fmt.Errorf("v5 quote is %d bytes, shorter than its %d-byte body and signature length", len(raw), size)
	}
	body := raw[bodyStart:bodyEnd]
	if v5.bodyType == tdxBodyTypeTD15 {
		v5.svn2 = append([]byte(nil), body[tdxBody10Size:tdxBody10Size+16]...)
		v5.serviceTD = append([]byte(nil), body[tdxBody10Size+16:tdxBody15Size]...)
	}
	v5.signedLen = bodyEnd
	view = make([]byte, 0, len(raw))
	view = append(view, raw[:tdxHeaderSize]...)
	binary.LittleEndian.PutUint16(view[0:2], abi.QuoteVersion)
	view = append(view, body[:tdxBody10Size]...)
	view = append(view, raw[bodyEnd:]...)
	return view, v5, nil
}
