package sandbox

import (
	"fmt"
	"time"

	"github.com/duo-confidential/duo-confidential/proxy/attest/attesttest"
	"github.com/duo-confidential/duo-confidential/proxy/envelope"
	"github.com/duo-confidential/duo-confidential/proxy/secret"
)

// exchanger is the secret service: a Responder with a mesh leaf issued by
// the test coordinator's mesh CA.
type exchanger struct {
	r *secret.Responder
}

func newExchanger(b *attesttest.Backend, ttl time.Duration) (exchanger, error) {
	c := b.Coordinator
	key, cert, err := secret.IssueMeshCert(c.MeshCAKey, c.MeshCACert, c.MeshCACert.NotBefore, c.MeshCACert.NotAfter)
	if err != nil {
		return exchanger{}, err
	}
	return exchanger{r: &secret.Responder{MeshKey: key, MeshCert: cert, TTL: ttl}}, nil
}

func (e exchanger) respond(pub []byte) (secret.ExchangeResponse, envelope.Secret, error) {
	if len(pub) != secret.PublicKeySize {
		return secret.ExchangeResponse{}, envelope.Secret{}, fmt.Errorf("public key is %d bytes, want %d", len(pub), secret.PublicKeySize)
	}
	resp, s, err := e.r.Respond(pub)
	if err != nil {
		return secret.ExchangeResponse{}, envelope.Secret{}, err
	}
	return resp, envelope.Secret{ID: s.ID, Key: s.Key}, nil
}
