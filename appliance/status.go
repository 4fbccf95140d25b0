package appliance

import "github.com/duo-confidential/duo-confidential/ui"

// tlsState is the TLS section of the admin status. The listeners serve
// plain HTTP until the TLS manager is wired in here.
func (a *Appliance) tlsState() ui.TLSState {
	return ui.TLSState{
		Plaintext:    true,
		Reason:       "TLS is not configured: the listeners serve plain HTTP",
		Certificates: []ui.CertState{},
	}
}
