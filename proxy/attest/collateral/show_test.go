package collateral

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/duo-confidential/duo-confidential/internal/testutil"
	"github.com/duo-confidential/duo-confidential/proxy/attest"
)

func TestNameURL(t *testing.T) {
	for _, tc := range []struct {
		url  string
		kind Kind
		name string
	}{
		{tcbURL, KindTCBInfo, "TDX TCB info (FMSPC 50806f000000)"},
		{qeURL, KindQEIdentity, "TD QE identity"},
		{"https://api.trustedservices.intel.com/sgx/certification/v4/qe/identity", KindQEIdentity, "SGX QE identity"},
		{pckCRLURL, KindPCKCRL, "PCK CRL (platform)"},
		{IntelRootCACRLURL, KindIntelRootCRL, "Intel root CA CRL"},
		{vcekURL, KindAMDVCEK, "AMD VCEK (Milan, chip 0123456789abcdef…, TCB bl=3 tee=0 snp=8 ucode=115)"},
		{"https://kdsintf.amd.com/vcek/v1/Turin/1e550a8ee5cf9f4d?fmcSPL=0&blSPL=0&teeSPL=0&snpSPL=0&ucodeSPL=9", KindAMDVCEK, "AMD VCEK (Turin, chip 1e550a8ee5cf9f4d, TCB fmc=0 bl=0 tee=0 snp=0 ucode=9)"},
		{chainURL, KindAMDCertChain, "AMD cert chain (Milan)"},
		{amdCRLURL, KindAMDCRL, "AMD CRL (Milan)"},
		{"https://kdsintf.amd.com/vlek/v1/Genoa/crl", KindAMDCRL, "AMD VLEK CRL (Genoa)"},
		{"https://example.com/other", KindUnknown, "https://example.com/other"},
	} {
		kind, name := nameURL(tc.url)
		if kind != tc.kind || name != tc.name {
			t.Errorf("nameURL(%s) = %s %q, want %s %q", tc.url, kind, name, tc.kind, tc.name)
		}
	}
}

func TestInspectAndCheck(t *testing.T) {
	now := time.Date(2026, 6, 15, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	ca := testutil.NewCA(t, "collateral test CA", 24*time.Hour)
	vcek, _ := ca.Leaf(t, nil, now.Add(-365*day), now.Add(365*day))
	expiredCert, _ := ca.Leaf(t, nil, now.Add(-365*day), now.Add(-day))
	chainPEM := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: vcek}), ca.PEM...)

	b := New()
	for _, it := range []*attest.CollateralItem{
		item(tcbURL, tcbInfoJSON(now.Add(-day), now.Add(29*day)), now.Add(-day)),                                            // fresh
		item(qeURL, qeIdentityJSON(now.Add(-10*day), now.Add(-time.Hour)), now.Add(-10*day)),                                // past nextUpdate
		item(pckCRLURL, ca.CRL(t, now.Add(-40*day), now.Add(20*day)), now.Add(-40*day)),                                     // too old
		item(amdCRLURL, ca.CRL(t, now.Add(-3*day), now.Add(-2*day)), now.Add(-3*day)),                                       // CRL expired
		item(IntelRootCACRLURL, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: ca.CRL(t, now, now.Add(day))}), now), // PEM CRL, fresh
		item(vcekURL, vcek, now.Add(-2*day)),                                                                                // DER certificate, fresh
		item(chainURL, chainPEM, now),                                                                                       // PEM chain, fresh
		item("https://kdsintf.amd.com/vcek/v1/Genoa/cert_chain", expiredCert, now),                                          // certificate past NotAfter
		item("https://kdsintf.amd.com/vcek/v1/Turin/crl", []byte("garbage"), now),                                           // unreadable
		item("https://kdsintf.amd.com/vcek/v1/Turin/cert_chain", chainPEM, now.Add(time.Hour)),                              // from the future
	} {
		mustPut(t, b, it)
	}
	want := map[string]Status{
		tcbURL: StatusOK, qeURL: StatusExpired, pckCRLURL: StatusStale, amdCRLURL: StatusExpired,
		IntelRootCACRLURL: StatusOK, vcekURL: StatusOK, chainURL: StatusOK,
		"https://kdsintf.amd.com/vcek/v1/Genoa/cert_chain": StatusExpired,
		"https://kdsintf.amd.com/vcek/v1/Turin/crl":        StatusInvalid,
		"https://kdsintf.amd.com/vcek/v1/Turin/cert_chain": StatusStale,
	}
	infos := Inspect(b, now, 30*day)
	for _, i := range infos {
		if i.Status != want[i.URL] {
			t.Errorf("%s: %s (%s), want %s", i.Name, i.Status, i.Problem, want[i.URL])
		}
		if i.URL == tcbURL && (!i.NextUpdate.Equal(now.Add(29*day)) || !i.IssueDate.Equal(now.Add(-day)) || i.Age != day) {
			t.Errorf("TCB info dates: %+v", i)
		}
		if i.URL == chainURL && !i.NextUpdate.Equal(ca.Cert.NotAfter) {
			t.Errorf("chain validity ends %v, want the earliest NotAfter %v", i.NextUpdate, ca.Cert.NotAfter)
		}
	}

	err := b.Check(now, 30*day)
	var se *StaleError
	if !errors.As(err, &se) || !errors.Is(err, attest.ErrCollateralStale) || len(se.Items) != 6 {
		t.Fatalf("Check = %v", err)
	}
	msg := err.Error()
	for _, s := range []string{"TD QE identity", "PCK CRL (platform)", "AMD CRL (Milan)", "next update 2026-06-15T11:00:00Z",
		"fetched 2026-05-06T12:00:00Z", "collateral export", "collateral import"} {
		if !strings.Contains(msg, s) {
			t.Errorf("Check message lacks %q:\n%s", s, msg)
		}
	}

	fresh := New()
	mustPut(t, fresh, item(tcbURL, tcbInfoJSON(now.Add(-day), now.Add(29*day)), now.Add(-day)))
	if err := fresh.Check(now, 0); err != nil {
		t.Errorf("fresh bundle: %v", err)
	}
	if err := fresh.Check(now.Add(31*day), 60*day); err == nil {
		t.Error("fresh bundle checked after nextUpdate passed")
	}
}

func TestWriteTableAndJSON(t *testing.T) {
	now := time.Date(2026, 6, 15, 12, 0, 0, 0, time.UTC)
	b := New()
	mustPut(t, b, item(tcbURL, tcbInfoJSON(now, now.Add(72*time.Hour)), now.Add(-26*time.Hour)))
	infos := Inspect(b, now, 0)
	var buf bytes.Buffer
	if err := WriteTable(&buf, infos); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, s := range []string{"NAME", "STATUS", "TDX TCB info (FMSPC 50806f000000)", "1d2h", "2026-06-18T12:00:00Z", "OK"} {
		if !strings.Contains(out, s) {
			t.Errorf("table lacks %q:\n%s", s, out)
		}
	}
	j, err := json.Marshal(infos[0])
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	_ = json.Unmarshal(j, &back)
	if back["age_seconds"] != float64(26*3600) || back["status"] != "OK" || back["name"] == nil {
		t.Errorf("JSON = %s", j)
	}
}
