package secret

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/duo-confidential/duo-confidential/proxy/attest"
)

func FuzzDecodeAttestResponse(f *testing.F) {
	f.Add([]byte(`{"AttestationDoc":"e30="}`))
	f.Add([]byte(`{"attestationdoc":"e30=","Extra":1}`))
	f.Add([]byte(`{"AttestationDoc":null}`))
	f.Add([]byte(`{"AttestationDoc":"e30"}`))
	f.Add([]byte(`{"AttestationDoc":"e30="}{}`))
	f.Add([]byte(`{"AttestationDoc":"` + strings.Repeat("QUFB", 64) + `"}`))
	f.Add([]byte(`[`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		doc, err := decodeAttestResponse(b)
		if err != nil {
			if doc != nil {
				t.Fatal("document returned with an error")
			}
			return
		}
		if len(doc) == 0 || len(doc) > attest.MaxDocSize {
			t.Fatalf("accepted a %d-byte document", len(doc))
		}
		// What we accept re-encodes to something we accept identically.
		re, _ := json.Marshal(AttestResponse{AttestationDoc: doc})
		again, err := decodeAttestResponse(re)
		if err != nil || !bytes.Equal(again, doc) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func FuzzDecodeExchangeResponse(f *testing.F) {
	b64 := base64.StdEncoding.EncodeToString
	valid, _ := json.Marshal(ExchangeResponse{
		EncapsulatedKey: bytes.Repeat([]byte{7}, EncapsulatedKeySize),
		Signature:       []byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01},
		MeshCert:        []byte{0x30, 0x00},
	})
	f.Add(valid)
	f.Add([]byte(`{"EncapsulatedKey":"` + b64(make([]byte, EncapsulatedKeySize-1)) + `","Signature":"AQ==","MeshCert":"AQ=="}`))
	f.Add([]byte(`{"EncapsulatedKey":"` + b64(make([]byte, EncapsulatedKeySize)) + `","Signature":"","MeshCert":"AQ=="}`))
	f.Add([]byte(`{"EncapsulatedKey":1}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	f.Add(append(bytes.Clone(valid), " x"...))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeExchangeResponse(b)
		if err != nil {
			if r != nil {
				t.Fatal("response returned with an error")
			}
			return
		}
		if len(r.EncapsulatedKey) != EncapsulatedKeySize || len(r.Signature) == 0 || len(r.Signature) > maxSignature ||
			len(r.MeshCert) == 0 || len(r.MeshCert) > maxMeshCert {
			t.Fatalf("accepted mis-sized response: %d/%d/%d", len(r.EncapsulatedKey), len(r.Signature), len(r.MeshCert))
		}
		re, _ := json.Marshal(r)
		again, err := decodeExchangeResponse(re)
		if err != nil || !bytes.Equal(again.EncapsulatedKey, r.EncapsulatedKey) ||
			!bytes.Equal(again.Signature, r.Signature) || !bytes.Equal(again.MeshCert, r.MeshCert) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
