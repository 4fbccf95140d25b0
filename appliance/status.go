package appliance

import (
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"net/http"
	"strings"
	"time"

	apptls "github.com/duo-confidential/duo-confidential/tls"
	"github.com/duo-confidential/duo-confidential/ui"
)

// tlsState is the TLS section of the admin status, from the certificate
// manager of the listeners.
func (a *Appliance) tlsState() ui.TLSState {
	st := a.certs.Status()
	out := ui.TLSState{
		Source:       st.Source,
		Plaintext:    st.Plaintext,
		Ready:        st.Ready,
		Reason:       st.Reason,
		Warnings:     st.Warnings,
		Certificates: make([]ui.CertState, 0, len(st.Certificates)),
	}
	for _, c := range st.Certificates {
		out.Certificates = append(out.Certificates, ui.CertState{
			Names: c.Names, Source: st.Source, Issuer: c.Issuer,
			NotBefore: c.NotBefore, NotAfter: c.NotAfter, ExpiresSoon: c.ExpiresSoon,
			LastRenewalAt: c.LastRenewalAt, LastError: c.LastError,
		})
	}
	if ca := a.certs.LocalCA(); ca != nil {
		sum := sha256.Sum256(ca.Certificate().Raw)
		out.CAFile = ca.CertificateFile()
		out.CAFingerprint = strings.ReplaceAll(strings.ToUpper(fmt.Sprintf("% x", sum[:])), " ", ":")
	}
	return out
}

// probeClient makes the admin UI's GitLab-setup checks against our own
// listeners: it trusts what GitLab must trust (the outbound roots plus the
// local CA) and names the server as GitLab would, by the certificate's
// first name, while dialling loopback.
func (a *Appliance) probeClient() (*http.Client, error) {
	if a.certs.Source() == apptls.SourceOff {
		return nil, nil
	}
	roots, err := a.o.Config.Outbound.RootCAs()
	if err != nil {
		return nil, err
	}
	if ca := a.certs.LocalCA(); ca != nil {
		roots.AddCert(ca.Certificate())
	}
	tc := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if names := a.o.Config.TLSNames(); len(names) > 0 && !strings.HasPrefix(names[0], "*") {
		tc.ServerName = names[0]
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy, tr.TLSClientConfig = nil, tc
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}, nil
}
