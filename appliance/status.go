package appliance

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"strings"
	"time"

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
// listeners, trusting them as GitLab must (ListenerClientTLS) while
// dialling loopback; nil with TLS off.
func (a *Appliance) probeClient() (*http.Client, error) {
	tc, err := a.o.Config.ListenerClientTLS()
	if err != nil || tc == nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy, tr.TLSClientConfig = nil, tc
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}, nil
}
