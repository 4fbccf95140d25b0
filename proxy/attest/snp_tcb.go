package attest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
)

// snpPart is one named security patch level of a TCB_VERSION.
type snpPart struct {
	name  string
	value uint8
}

// snpTCBValues splits a TCB_VERSION in the product's layout (SEV-SNP ABI
// specification, TCB_VERSION). Milan and Genoa: bootloader (byte 0), TEE
// (1), SNP (6), microcode (7). Turin: FMC (byte 0), bootloader (1), TEE (2),
// SNP (3), microcode (7). go-sev-guest v0.15.0 knows only the first layout,
// so every place that shows or compares SPLs goes through here.
func snpTCBValues(product string, tcb uint64) []snpPart {
	b := func(i uint) uint8 { return uint8(tcb >> (8 * i)) }
	if product == "Turin" {
		return []snpPart{{"fmc", b(0)}, {"bootloader", b(1)}, {"tee", b(2)}, {"snp", b(3)}, {"microcode", b(7)}}
	}
	return []snpPart{{"bootloader", b(0)}, {"tee", b(1)}, {"snp", b(6)}, {"microcode", b(7)}}
}

// snpTCBString renders a TCB_VERSION for messages.
func snpTCBString(product string, tcb uint64) string {
	var parts []string
	for _, p := range snpTCBValues(product, tcb) {
		parts = append(parts, fmt.Sprintf("%s=%d", p.name, p.value))
	}
	return strings.Join(parts, " ")
}

// snpVCEKURL is the AMD KDS URL of the VCEK for this chip and TCB. Turin
// VCEKs are indexed by the first 8 bytes of CHIP_ID and take the FMC SPL as
// well; go-sev-guest v0.15.0 builds only the Milan/Genoa form.
func snpVCEKURL(product string, chipID []byte, tcb uint64) string {
	if product != "Turin" {
		return kds.VCEKCertURL(product, chipID, kds.TCBVersion(tcb))
	}
	id := chipID
	if len(id) > 8 {
		id = id[:8]
	}
	p := snpTCBValues(product, tcb)
	return fmt.Sprintf("https://kdsintf.amd.com/vcek/v1/Turin/%s?fmcSPL=%d&blSPL=%d&teeSPL=%d&snpSPL=%d&ucodeSPL=%d",
		hex.EncodeToString(id), p[0].value, p[1].value, p[2].value, p[3].value, p[4].value)
}

// AMD KDS certificate extensions (AMD KDS specification 57230, "VCEK
// certificate extensions"). fmcSPL (.3.9) is new with Turin.
var oidKDSRoot = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 3704, 1}

// snpEKInfo is what an endorsement certificate (VCEK or VLEK) says about
// the platform it was issued for.
type snpEKInfo struct {
	product string
	hwid    []byte // VCEK: chip ID (64 bytes; Turin: 8)
	cspID   string // VLEK: the cloud provider
	tcb     uint64 // TCB_VERSION in the product's layout
}

// snpEndorsementInfo reads the KDS extensions of a VCEK/VLEK. Milan and
// Genoa certificates go through go-sev-guest. Turin certificates carry
// fmcSPL (1.3.6.1.4.1.3704.1.3.9), omit the reserved spl4 and have an 8-byte
// HWID; go-sev-guest v0.15.0 (the newest release) rejects the first with
// "not an AMD KDS OID" before it would trip over the other two, so Turin is
// read here, with the same strictness: every KDS extension known, none
// twice, every SPL an INTEGER 0..255.
func snpEndorsementInfo(ek *x509.Certificate, signer abi.ReportSigner, product string) (snpEKInfo, error) {
	if product != "Turin" {
		exts, err := kds.CertificateExtensions(ek, signer)
		if err != nil {
			return snpEKInfo{}, err
		}
		return snpEKInfo{product: product, hwid: exts.HWID, cspID: exts.CspID, tcb: uint64(exts.TCBVersion)}, nil
	}
	return turinEndorsementInfo(ek, signer)
}

func turinEndorsementInfo(ek *x509.Certificate, signer abi.ReportSigner) (snpEKInfo, error) {
	info := snpEKInfo{product: "Turin"}
	seen := map[string]bool{}
	spl := map[int]uint8{}
	for _, e := range ek.Extensions {
		if len(e.Id) < len(oidKDSRoot) || !e.Id[:len(oidKDSRoot)].Equal(oidKDSRoot) {
			continue // standard X.509 extensions (AKI, ...)
		}
		key := e.Id.String()
		if seen[key] {
			return info, fmt.Errorf("KDS extension %s appears twice", key)
		}
		seen[key] = true
		rest := []int(e.Id[len(oidKDSRoot):])
		switch {
		case len(rest) == 1 && rest[0] == 1: // structVersion
			var v int
			if err := unmarshalExact(e.Value, &v); err != nil {
				return info, fmt.Errorf("structVersion: %w", err)
			}
		case len(rest) == 1 && rest[0] == 2: // productName
			var s string
			if _, err := asn1.UnmarshalWithParams(e.Value, &s, "ia5"); err != nil || len(e.Value) == 0 || e.Value[0] != asn1.TagIA5String {
				return info, errors.New("productName is not an IA5String")
			}
			if s != "Turin" && !strings.HasPrefix(s, "Turin-") {
				return info, fmt.Errorf("productName %q is not Turin", s)
			}
		case len(rest) == 2 && rest[0] == 3 && rest[1] >= 1 && rest[1] <= 9: // SPLs
			var v int
			if err := unmarshalExact(e.Value, &v); err != nil || v < 0 || v > 255 {
				return info, fmt.Errorf("SPL %s is not an INTEGER 0..255", key)
			}
			spl[rest[1]] = uint8(v)
		case len(rest) == 1 && rest[0] == 4: // hwID: raw bytes, as KDS sends them
			info.hwid = append([]byte(nil), e.Value...)
		case len(rest) == 1 && rest[0] == 5: // cspId
			var s string
			if _, err := asn1.UnmarshalWithParams(e.Value, &s, "ia5"); err != nil {
				return info, errors.New("cspId is not an IA5String")
			}
			info.cspID = s
		default:
			return info, fmt.Errorf("unknown AMD KDS extension %s", key)
		}
	}
	for _, need := range []int{1, 2, 3, 8, 9} { // bl, tee, snp, ucode, fmc
		if _, ok := spl[need]; !ok {
			return info, fmt.Errorf("the Turin certificate lacks SPL extension 1.3.6.1.4.1.3704.1.3.%d", need)
		}
	}
	if !seen[oidKDSRoot.String()+".1"] || !seen[oidKDSRoot.String()+".2"] {
		return info, errors.New("the Turin certificate lacks structVersion or productName")
	}
	switch signer {
	case abi.VcekReportSigner:
		if len(info.hwid) != 8 || info.cspID != "" {
			return info, fmt.Errorf("a Turin VCEK must carry an 8-byte hwID and no cspId (hwID %d bytes)", len(info.hwid))
		}
	case abi.VlekReportSigner:
		if info.cspID == "" || info.hwid != nil {
			return info, errors.New("a Turin VLEK must carry a cspId and no hwID")
		}
	default:
		return info, fmt.Errorf("unexpected signer %v", signer)
	}
	info.tcb = uint64(spl[9]) | uint64(spl[1])<<8 | uint64(spl[2])<<16 | uint64(spl[3])<<24 | uint64(spl[8])<<56
	return info, nil
}

// checkTurinEndorsementCert checks what go-sev-guest's certificate
// validation checks for Milan and Genoa: X.509 v3, RSASSA-PSS SHA-384
// signature, ECDSA P-384 key, subject CN SEV-VCEK / SEV-VLEK.
func checkTurinEndorsementCert(ek *x509.Certificate, signer abi.ReportSigner) error {
	if ek.Version != 3 || ek.SignatureAlgorithm != x509.SHA384WithRSAPSS {
		return fmt.Errorf("%v certificate is v%d with %v, want v3 with SHA-384 RSASSA-PSS", signer, ek.Version, ek.SignatureAlgorithm)
	}
	if k, ok := ek.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P384() {
		return fmt.Errorf("%v certificate key is not ECDSA P-384", signer)
	}
	want := "SEV-VCEK"
	if signer == abi.VlekReportSigner {
		want = "SEV-VLEK"
	}
	if ek.Subject.CommonName != want {
		return fmt.Errorf("%v certificate subject CN %q, want %q", signer, ek.Subject.CommonName, want)
	}
	return nil
}
