package attest

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Intel TCB statuses (Intel PCS TCB info v3, Intel QVL).
const (
	TCBUpToDate                           = "UpToDate"
	TCBSWHardeningNeeded                  = "SWHardeningNeeded"
	TCBConfigurationNeeded                = "ConfigurationNeeded"
	TCBConfigurationAndSWHardeningNeeded  = "ConfigurationAndSWHardeningNeeded"
	TCBOutOfDate                          = "OutOfDate"
	TCBOutOfDateConfigurationNeeded       = "OutOfDateConfigurationNeeded"
	TCBRelaunchAdvised                    = "TDRelaunchAdvised"
	TCBRelaunchAdvisedConfigurationNeeded = "TDRelaunchAdvisedConfigurationNeeded"
	TCBRevoked                            = "Revoked"
	tcbUnsupported                        = "Unsupported"
)

// acceptableTDXStatuses are the statuses an operator may put on the
// accept-list. Revoked and "no matching level" are never acceptable.
var acceptableTDXStatuses = []string{
	TCBSWHardeningNeeded, TCBConfigurationNeeded, TCBConfigurationAndSWHardeningNeeded,
	TCBOutOfDate, TCBOutOfDateConfigurationNeeded, TCBRelaunchAdvised, TCBRelaunchAdvisedConfigurationNeeded,
}

// TCBPolicy is the operator's explicit decision on platforms whose TCB is
// not fully current. The zero value accepts only UpToDate TDX platforms and
// holds SEV-SNP platforms to the manifest's minimum TCB alone.
type TCBPolicy struct {
	// TDXAcceptStatuses lists Intel TCB statuses accepted besides UpToDate
	// (e.g. "SWHardeningNeeded"). Revoked is never accepted.
	TDXAcceptStatuses []string
	// TDXAcceptAdvisories lists the Intel advisory IDs (INTEL-SA-…) the
	// operator has assessed. A status from TDXAcceptStatuses is accepted only
	// when every advisory the matching TCB levels name is on this list.
	TDXAcceptAdvisories []string
	// SNPMinimumTCB is an operator floor per product line ("Milan",
	// "Genoa", "Turin") applied to REPORTED, CURRENT and LAUNCH TCB on top of
	// the manifest's minimum.
	SNPMinimumTCB map[string]SNPMinimumTCB
}

// SNPMinimumTCB is a minimum security patch level per SEV-SNP firmware
// component; nil means not constrained. FMC exists on Turin only.
type SNPMinimumTCB struct {
	Bootloader *uint8 `json:"bootloader,omitempty"`
	TEE        *uint8 `json:"tee,omitempty"`
	SNP        *uint8 `json:"snp,omitempty"`
	Microcode  *uint8 `json:"microcode,omitempty"`
	FMC        *uint8 `json:"fmc,omitempty"`
}

// Validate rejects statuses Intel does not define or that can never be
// accepted, advisory IDs that are not INTEL-SA-nnnnn, unknown SNP product
// lines and an FMC floor for a product without FMC.
func (p TCBPolicy) Validate() error {
	for _, s := range p.TDXAcceptStatuses {
		if s == TCBUpToDate {
			continue
		}
		if !slices.Contains(acceptableTDXStatuses, s) {
			return fmt.Errorf("TDX TCB status %q cannot be accepted; choose from %s", s, strings.Join(acceptableTDXStatuses, ", "))
		}
	}
	for _, a := range p.TDXAcceptAdvisories {
		if !strings.HasPrefix(a, "INTEL-SA-") || len(a) <= len("INTEL-SA-") {
			return fmt.Errorf("advisory ID %q is not of the form INTEL-SA-nnnnn", a)
		}
	}
	for prod, m := range p.SNPMinimumTCB {
		if !knownSNPProduct(prod) {
			return fmt.Errorf("SNP minimum TCB for unknown product line %q (want Milan, Genoa or Turin)", prod)
		}
		if m.FMC != nil && prod != "Turin" {
			return fmt.Errorf("SNP minimum TCB for %s sets fmc, which only Turin has", prod)
		}
	}
	return nil
}

// String renders the TDX part of the policy for results and logs.
func (p TCBPolicy) String() string {
	if len(p.TDXAcceptStatuses) == 0 {
		return "UpToDate only"
	}
	s := "UpToDate, or " + strings.Join(p.TDXAcceptStatuses, "/")
	if len(p.TDXAcceptAdvisories) > 0 {
		s += " with advisories limited to " + strings.Join(p.TDXAcceptAdvisories, ", ")
	} else {
		s += " without advisories"
	}
	return s
}

// tdxDecision decides one combined Intel status with the advisories the
// matching levels name. It returns "" when the status is UpToDate, a
// description of the acceptance when the policy accepts it, or an error
// saying which policy entry is missing.
func (p TCBPolicy) tdxDecision(status string, advisories []string) (string, error) {
	if status == TCBUpToDate {
		return "", nil
	}
	if !slices.Contains(p.TDXAcceptStatuses, status) || !slices.Contains(acceptableTDXStatuses, status) {
		return "", fmt.Errorf("TCB status %s is not accepted (policy: %s); update the host, or accept it explicitly in attestation.tcb_policy.tdx.accept_statuses", status, p)
	}
	var missing []string
	for _, a := range advisories {
		if !slices.Contains(p.TDXAcceptAdvisories, a) {
			missing = append(missing, a)
		}
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("TCB status %s names advisories not accepted by the operator: %s (attestation.tcb_policy.tdx.accept_advisories)", status, strings.Join(missing, ", "))
	}
	d := "status " + status + " accepted by operator policy"
	if len(advisories) > 0 {
		d += " (advisories " + strings.Join(advisories, ", ") + ")"
	}
	return d, nil
}

// unionSorted merges advisory lists without duplicates.
func unionSorted(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		for _, a := range l {
			if !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	sort.Strings(out)
	return out
}

// ParseSNPMinimumTCB reads an operator floor written as space-separated
// name=value pairs, e.g. "bootloader=4 tee=0 snp=22 microcode=213" (Turin
// also "fmc=1"). An empty text is no floor (ok false).
func ParseSNPMinimumTCB(product, text string) (m SNPMinimumTCB, ok bool, err error) {
	fields := strings.Fields(text)
	if len(fields) == 0 {
		return m, false, nil
	}
	dst := map[string]**uint8{"bootloader": &m.Bootloader, "tee": &m.TEE, "snp": &m.SNP, "microcode": &m.Microcode}
	if product == "Turin" {
		dst["fmc"] = &m.FMC
	}
	for _, f := range fields {
		name, val, found := strings.Cut(f, "=")
		p, known := dst[name]
		if !found || !known {
			names := make([]string, 0, len(dst))
			for n := range dst {
				names = append(names, n)
			}
			sort.Strings(names)
			return m, false, fmt.Errorf("%q: want name=value with name one of %s", f, strings.Join(names, ", "))
		}
		if *p != nil {
			return m, false, fmt.Errorf("%s is given twice", name)
		}
		v, err := strconv.ParseUint(val, 10, 8)
		if err != nil {
			return m, false, fmt.Errorf("%s=%s: want a number from 0 to 255", name, val)
		}
		u := uint8(v)
		*p = &u
	}
	return m, true, nil
}
