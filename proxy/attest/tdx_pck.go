package attest

import (
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
)

// SGX extension entries the vendor reader skips (Intel SGX PCK Certificate
// and CRL Profile). Note that SGX Type is .5: .4 is the FMSPC.
var (
	oidPIID               = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 6}
	oidPCKSGXType         = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 5}
	oidPCKConfiguration   = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 7}
	oidPCKDynamicPlatform = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 7, 1}
	oidPCKCachedKeys      = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 7, 2}
	oidPCKSMTEnabled      = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 7, 3}
)

// SGX Type values of a PCK certificate (ENUMERATED in the SGX extension).
const (
	SGXTypeStandard              = 0 // client SGX, no TDX
	SGXTypeScalable              = 1 // scalable SGX: memory encrypted, not integrity-protected
	SGXTypeScalableWithIntegrity = 2 // scalable SGX with memory integrity protection
)

// maxPCKExtension bounds the SGX extension we walk; real ones are ~550
// bytes, and the certificate parser has already bounded it by the quote.
const maxPCKExtension = 16 << 10

// pckPlatform holds the SGX extension values the vendor reader does not
// return; nil pointers mean the certificate does not state the value.
type pckPlatform struct {
	PIID            string // hex
	SGXType         *int
	DynamicPlatform *bool
	CachedKeys      *bool
	SMTEnabled      *bool
}

// pckEntry is one SGX extension item: SEQUENCE { OID, value }.
type pckEntry struct {
	ID  asn1.ObjectIdentifier
	Val asn1.RawValue
}

// parsePCKExtensions reads PIID, SGX Type and Configuration from the DER
// value of the SGX extension. Unknown entries are ignored so that Intel may
// add some; a known entry that is malformed or repeated is an error, because
// a value we cannot read unambiguously must not be guessed.
func parsePCKExtensions(der []byte) (pckPlatform, error) {
	var p pckPlatform
	if len(der) > maxPCKExtension {
		return p, fmt.Errorf("SGX extension is %d bytes, more than %d", len(der), maxPCKExtension)
	}
	var items []asn1.RawValue
	if err := unmarshalExact(der, &items); err != nil {
		return p, fmt.Errorf("SGX extension: %w", err)
	}
	seen := map[string]bool{}
	for i, it := range items {
		var e pckEntry
		if err := unmarshalExact(it.FullBytes, &e); err != nil {
			return p, fmt.Errorf("SGX extension entry %d is not SEQUENCE { OID, value }", i)
		}
		var err error
		switch {
		case e.ID.Equal(oidPIID):
			err = once(seen, "PIID", func() error {
				var b []byte
				if err := unmarshalExact(e.Val.FullBytes, &b); err != nil || len(b) != 16 {
					return errors.New("PIID is not a 16-byte OCTET STRING")
				}
				p.PIID = hex.EncodeToString(b)
				return nil
			})
		case e.ID.Equal(oidPCKSGXType):
			err = once(seen, "SGX Type", func() error {
				var t asn1.Enumerated
				if err := unmarshalExact(e.Val.FullBytes, &t); err != nil || t < 0 {
					return errors.New("SGX Type is not a non-negative ENUMERATED")
				}
				v := int(t)
				p.SGXType = &v
				return nil
			})
		case e.ID.Equal(oidPCKConfiguration):
			err = once(seen, "Configuration", func() error { return parsePCKConfiguration(e.Val.FullBytes, &p) })
		}
		if err != nil {
			return p, err
		}
	}
	return p, nil
}

// parsePCKConfiguration reads SEQUENCE OF SEQUENCE { OID, BOOLEAN }.
func parsePCKConfiguration(der []byte, p *pckPlatform) error {
	var items []asn1.RawValue
	if err := unmarshalExact(der, &items); err != nil {
		return fmt.Errorf("configuration is not a SEQUENCE: %w", err)
	}
	seen := map[string]bool{}
	for i, it := range items {
		var e pckEntry
		if err := unmarshalExact(it.FullBytes, &e); err != nil {
			return fmt.Errorf("configuration entry %d is not SEQUENCE { OID, value }", i)
		}
		var dst **bool
		var name string
		switch {
		case e.ID.Equal(oidPCKDynamicPlatform):
			dst, name = &p.DynamicPlatform, "dynamicPlatform"
		case e.ID.Equal(oidPCKCachedKeys):
			dst, name = &p.CachedKeys, "cachedKeys"
		case e.ID.Equal(oidPCKSMTEnabled):
			dst, name = &p.SMTEnabled, "SMTEnabled"
		default:
			continue
		}
		err := once(seen, name, func() error {
			var v bool
			if err := unmarshalExact(e.Val.FullBytes, &v); err != nil {
				return fmt.Errorf("configuration %s is not a BOOLEAN", name)
			}
			*dst = &v
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// once runs parse for the first occurrence of name and rejects repeats.
func once(seen map[string]bool, name string, parse func() error) error {
	if seen[name] {
		return fmt.Errorf("SGX extension states %s twice", name)
	}
	seen[name] = true
	return parse()
}

// unmarshalExact is asn1.Unmarshal that also rejects trailing bytes.
func unmarshalExact(der []byte, v any) error {
	rest, err := asn1.Unmarshal(der, v)
	if err == nil && len(rest) != 0 {
		err = errors.New("trailing data")
	}
	return err
}

// sgxTypeName renders an SGX Type for reports.
func sgxTypeName(t int) string {
	switch t {
	case SGXTypeStandard:
		return "Standard (0)"
	case SGXTypeScalable:
		return "Scalable (1)"
	case SGXTypeScalableWithIntegrity:
		return "ScalableWithIntegrity (2)"
	}
	return "unknown (" + strconv.Itoa(t) + ")"
}

// notStated is the Actual value of a PCK field the certificate lacks.
const notStated = "not stated"

func boolName(b *bool) string {
	if b == nil {
		return notStated
	}
	return strconv.FormatBool(*b)
}

// pckMeasurements lists the PCK platform values for the Result.
func pckMeasurements(ev *TDXEvidence) []Measurement {
	t := notStated
	if ev.SGXType != nil {
		t = sgxTypeName(*ev.SGXType)
	}
	return []Measurement{
		{Name: "PCK_SGX_TYPE", Actual: t},
		{Name: "PCK_SMT_ENABLED", Actual: boolName(ev.SMTEnabled)},
		{Name: "PCK_DYNAMIC_PLATFORM", Actual: boolName(ev.DynamicPlatform)},
	}
}

// pckRequirement is one reference flag's demand on the PCK leaf.
type pckRequirement struct {
	measurement, field, stated string
	expected                   string
	actual                     func(*TDXEvidence) (ok, present bool)
}

// pckRequirements returns what ref demands of the PCK leaf. Contrast reads
// these flags as facts the platform's PCK certificate must state; a leaf
// that does not state them cannot satisfy the reference.
func pckRequirements(ref TDXReference) []pckRequirement {
	var out []pckRequirement
	if ref.MemoryIntegrity {
		out = append(out, pckRequirement{"PCK_SGX_TYPE", "PCK SGX type", "its SGX type", sgxTypeName(SGXTypeScalableWithIntegrity),
			func(ev *TDXEvidence) (bool, bool) {
				return ev.SGXType != nil && *ev.SGXType == SGXTypeScalableWithIntegrity, ev.SGXType != nil
			}})
	}
	if ref.SMTDisabled {
		out = append(out, pckRequirement{"PCK_SMT_ENABLED", "PCK SMTEnabled", "whether SMT is enabled", "false",
			func(ev *TDXEvidence) (bool, bool) {
				return ev.SMTEnabled != nil && !*ev.SMTEnabled, ev.SMTEnabled != nil
			}})
	}
	if ref.StaticPlatform {
		out = append(out, pckRequirement{"PCK_DYNAMIC_PLATFORM", "PCK DynamicPlatform", "whether it is a dynamic platform", "false",
			func(ev *TDXEvidence) (bool, bool) {
				return ev.DynamicPlatform != nil && !*ev.DynamicPlatform, ev.DynamicPlatform != nil
			}})
	}
	return out
}

// checkPCKPlatform enforces MemoryIntegrity, SMTDisabled and StaticPlatform.
func checkPCKPlatform(ev *TDXEvidence, ref TDXReference) error {
	actual := map[string]string{}
	for _, m := range pckMeasurements(ev) {
		actual[m.Name] = m.Actual
	}
	for _, r := range pckRequirements(ref) {
		ok, present := r.actual(ev)
		if !present {
			return newError(ClassMeasurement, r.field, nil, "the reference requires %s = %s, but the platform's PCK certificate does not state %s (older or Processor-CA certificate)", r.field, r.expected, r.stated)
		}
		if !ok {
			return newError(ClassMeasurement, r.field, nil, "%s is %s, the reference requires %s", r.field, actual[r.measurement], r.expected)
		}
	}
	return nil
}

// recordPCKExpected fills Expected/Match for the PCK values ref constrains.
func recordPCKExpected(res *Result, ev *TDXEvidence, ref TDXReference) {
	for _, r := range pckRequirements(ref) {
		ok, _ := r.actual(ev)
		setExpected(res, r.measurement, r.expected, ok)
	}
}
