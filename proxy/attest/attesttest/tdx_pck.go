package attesttest

import (
	"encoding/asn1"
	"errors"
	"fmt"

	"github.com/google/go-tdx-guest/pcs"
)

// SGX extension entries a test may rewrite (Intel PCK certificate profile).
var (
	oidSGXType         = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 5}
	oidConfiguration   = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 7}
	oidDynamicPlatform = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 7, 1}
	oidCachedKeys      = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 7, 2}
	oidSMTEnabled      = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 7, 3}
)

// TDXPCKOptions rewrites the SGX extension of the PCK leaf. Nil fields keep
// the sample leaf's value (SGX type Scalable; dynamicPlatform true,
// cachedKeys false, SMTEnabled true); the Omit flags drop the entry, as
// older or Processor-CA leaves do.
type TDXPCKOptions struct {
	SGXType                                 *int
	DynamicPlatform, CachedKeys, SMTEnabled *bool
	OmitSGXType, OmitConfiguration          bool
}

type sgxEntry struct {
	ID  asn1.ObjectIdentifier
	Val asn1.RawValue
}

type sgxBool struct {
	ID  asn1.ObjectIdentifier
	Val bool
}

// WithPCK returns a copy of a whose PCK leaf (same key, serial, issuer and
// validity) carries the SGX extension rewritten by o. Roots, collateral and
// keys are shared, so the variant's quotes verify exactly as a's do.
func (a *TDXAuthority) WithPCK(o TDXPCKOptions) (*TDXAuthority, error) {
	var orig []byte
	for _, e := range a.pck.Extensions {
		if e.Id.Equal(pcs.OidSgxExtension) {
			orig = e.Value
		}
	}
	sgx, err := rewriteSGXExtension(orig, o)
	if err != nil {
		return nil, err
	}
	v := *a
	if err := v.issuePCK(sgx); err != nil {
		return nil, err
	}
	return &v, nil
}

// rewriteSGXExtension applies o to the DER SGX extension der, keeping every
// other entry byte for byte and in order.
func rewriteSGXExtension(der []byte, o TDXPCKOptions) ([]byte, error) {
	var items []asn1.RawValue
	if rest, err := asn1.Unmarshal(der, &items); err != nil || len(rest) != 0 {
		return nil, errors.New("sample SGX extension is not a SEQUENCE")
	}
	var out []asn1.RawValue
	for _, it := range items {
		var e sgxEntry
		if _, err := asn1.Unmarshal(it.FullBytes, &e); err != nil {
			return nil, fmt.Errorf("sample SGX extension entry: %w", err)
		}
		switch {
		case e.ID.Equal(oidSGXType) && o.OmitSGXType, e.ID.Equal(oidConfiguration) && o.OmitConfiguration:
			continue
		case e.ID.Equal(oidSGXType) && o.SGXType != nil:
			b, err := asn1.Marshal(struct {
				ID  asn1.ObjectIdentifier
				Val asn1.Enumerated
			}{oidSGXType, asn1.Enumerated(*o.SGXType)})
			if err != nil {
				return nil, fmt.Errorf("encode SGX type: %w", err)
			}
			it = asn1.RawValue{FullBytes: b}
		case e.ID.Equal(oidConfiguration):
			b, err := rewriteConfiguration(e.Val.FullBytes, o)
			if err != nil {
				return nil, err
			}
			it = asn1.RawValue{FullBytes: b}
		}
		out = append(out, it)
	}
	return asn1.Marshal(out)
}

// rewriteConfiguration returns the Configuration entry with o's overrides.
func rewriteConfiguration(der []byte, o TDXPCKOptions) ([]byte, error) {
	var cfg []sgxBool
	if rest, err := asn1.Unmarshal(der, &cfg); err != nil || len(rest) != 0 {
		return nil, errors.New("sample SGX configuration is not SEQUENCE OF { OID, BOOLEAN }")
	}
	for i := range cfg {
		for _, f := range []struct {
			oid asn1.ObjectIdentifier
			v   *bool
		}{{oidDynamicPlatform, o.DynamicPlatform}, {oidCachedKeys, o.CachedKeys}, {oidSMTEnabled, o.SMTEnabled}} {
			if cfg[i].ID.Equal(f.oid) && f.v != nil {
				cfg[i].Val = *f.v
			}
		}
	}
	b, err := asn1.Marshal(struct {
		ID  asn1.ObjectIdentifier
		Val []sgxBool
	}{oidConfiguration, cfg})
	if err != nil {
		return nil, fmt.Errorf("encode SGX configuration: %w", err)
	}
	return b, nil
}
