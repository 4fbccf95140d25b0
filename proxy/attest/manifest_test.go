package attest

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

const coordHash = "aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899"

func tdxManifestJSON(extra string) string {
	z48 := strings.Repeat("00", 48)
	return `{"Policies":{"` + coordHash + `":{"SANs":["coordinator"],"Role":"coordinator"}` + extra + `},
"ReferenceValues":{"tdx":[{"MrTd":"` + z48 + `","MrSeam":"` + z48 + `","Rtmrs":["` + z48 + `","` + z48 + `","` + z48 + `","` + z48 + `"],"Xfam":"e702060000000000","TdAttributes":"0000001000000000"}]}}`
}

func TestParseManifest(t *testing.T) {
	m, err := ParseManifest([]byte(tdxManifestJSON("")))
	if err != nil {
		t.Fatal(err)
	}
	h, err := m.CoordinatorPolicyHash()
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(h[:]) != coordHash {
		t.Errorf("policy hash %x, want %s", h, coordHash)
	}
	if len(m.ReferenceValues.TDX) != 1 || m.ReferenceValues.TDX[0].Xfam != "e702060000000000" {
		t.Errorf("reference values not decoded: %+v", m.ReferenceValues)
	}
}

func TestParseManifestLegacyRtrmsSpelling(t *testing.T) {
	in := strings.Replace(tdxManifestJSON(""), `"Rtmrs"`, `"Rtrms"`, 1)
	m, err := ParseManifest([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if m.ReferenceValues.TDX[0].Rtmrs[3] == "" {
		t.Error("Rtrms spelling not accepted")
	}
}

func TestParseManifestErrors(t *testing.T) {
	z48 := strings.Repeat("00", 48)
	snp := func(field string) string {
		v := map[string]string{
			"prod": `"Milan"`, "meas": `"` + z48 + `"`, "tcb": `{"BootloaderVersion":3,"TEEVersion":0,"SNPVersion":8,"MicrocodeVersion":115}`, "debug": "false",
		}
		switch field {
		case "prod":
			v["prod"] = `"Naples"`
		case "meas":
			v["meas"] = `"abcd"`
		case "tcb":
			v["tcb"] = `{"BootloaderVersion":3}`
		case "debug":
			v["debug"] = "true"
		}
		return `{"Policies":{"` + coordHash + `":{"Role":"coordinator"}},"ReferenceValues":{"snp":[{"ProductName":` + v["prod"] +
			`,"TrustedMeasurement":` + v["meas"] + `,"MinimumTCB":` + v["tcb"] + `,"GuestPolicy":{"SMT":true,"Debug":` + v["debug"] + `}}]}}`
	}
	tests := []struct {
		name  string
		in    string
		class Class
		want  string
	}{
		{"not json", `{"Policies":`, ClassMalformed, "decode"},
		{"trailing data", tdxManifestJSON("") + `{}`, ClassMalformed, "trailing"},
		{"no coordinator", strings.Replace(tdxManifestJSON(""), `"Role":"coordinator"`, `"Role":""`, 1), ClassPolicy, "exactly one"},
		{"two coordinators", tdxManifestJSON(`,"` + strings.Repeat("11", 32) + `":{"Role":"coordinator"}`), ClassPolicy, "found 2"},
		{"bad policy hash", tdxManifestJSON(`,"xyz":{"Role":""}`), ClassPolicy, "policy hash"},
		{"no reference values", `{"Policies":{"` + coordHash + `":{"Role":"coordinator"}},"ReferenceValues":{}}`, ClassPolicy, "no SNP or TDX"},
		{"short MRTD", strings.Replace(tdxManifestJSON(""), `"MrTd":"`+z48, `"MrTd":"00`, 1), ClassPolicy, "MrTd"},
		{"bad XFAM hex", strings.Replace(tdxManifestJSON(""), "e702060000000000", "zz02060000000000", 1), ClassPolicy, "Xfam"},
		{"unknown SNP product", snp("prod"), ClassPolicy, "ProductName"},
		{"short SNP measurement", snp("meas"), ClassPolicy, "TrustedMeasurement"},
		{"incomplete minimum TCB", snp("tcb"), ClassPolicy, "MinimumTCB"},
		{"debug SNP reference", snp("debug"), ClassPolicy, "debug"},
	}
	if _, err := ParseManifest([]byte(snp(""))); err != nil {
		t.Fatalf("valid SNP manifest rejected: %v", err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseManifest([]byte(tc.in))
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, &Error{Class: tc.class}) {
				t.Errorf("class %q, want %q (%v)", ClassOf(err), tc.class, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(tdxManifestJSON("")))
	f.Add([]byte(`{"Policies":{},"ReferenceValues":{"snp":[{}]}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(b)
		if err != nil {
			if ClassOf(err) == "" {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if _, err := m.CoordinatorPolicyHash(); err != nil {
			t.Fatalf("valid manifest without coordinator hash: %v", err)
		}
	})
}

func TestErrorIs(t *testing.T) {
	err := newError(ClassMeasurement, "MRTD", errors.New("lib"), "mismatch")
	if !errors.Is(err, ErrMeasurement) || errors.Is(err, ErrSignature) {
		t.Fatal("errors.Is does not follow the class")
	}
	wrapped := errors.Join(errors.New("context"), err)
	if ClassOf(wrapped) != ClassMeasurement {
		t.Fatalf("ClassOf(wrapped) = %q", ClassOf(wrapped))
	}
	if got := err.Error(); got != "measurement: MRTD: mismatch: lib" {
		t.Fatalf("Error() = %q", got)
	}
}
