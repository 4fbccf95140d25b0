package secret

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hpke"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"time"
)

// DefaultServerTTL is the secret service's lease on a secret (upstream
// stores it in etcd with a 3600 s lease).
const DefaultServerTTL = time.Hour

// Responder is the secret service's half of the exchange, for the sandbox
// backend and tests. It holds no secrets itself: OnSecret (if set) receives
// each new secret for the backend's ID→K store. It is safe for concurrent
// use if OnSecret is.
//
// Nothing about a Responder outside a TEE is confidential.
type Responder struct {
	// MeshKey signs exchanges; MeshCert is its leaf, issued by the mesh CA
	// the coordinator attests (see IssueMeshCert).
	MeshKey  *ecdsa.PrivateKey
	MeshCert *x509.Certificate
	// TTL is the lease of each secret; zero means DefaultServerTTL.
	TTL time.Duration
	// Now is the clock for ExpiresAt; nil means time.Now.
	Now func() time.Time
	// OnSecret, if set, is called by ServeHTTP with each new secret.
	OnSecret func(Secret)
}

// Respond answers one exchange for the serialized X-Wing public key pub:
// HPKE NewSender, an ASN.1 ECDSA signature by MeshKey over
// SHA-256(pub‖enc), and K = Export("", 32). The Secret carries ID, K and the
// lease expiry.
func (r *Responder) Respond(pub []byte) (resp ExchangeResponse, s Secret, err error) {
	if r.MeshKey == nil || r.MeshCert == nil {
		return ExchangeResponse{}, Secret{}, errors.New("responder has no mesh key or certificate")
	}
	pk, err := kem.NewPublicKey(pub)
	if err != nil {
		return ExchangeResponse{}, Secret{}, fmt.Errorf("client public key: %w", err)
	}
	enc, sender, err := hpke.NewSender(pk, kdf, aead, nil)
	if err != nil {
		return ExchangeResponse{}, Secret{}, fmt.Errorf("hpke sender: %w", err)
	}
	sig, err := ecdsa.SignASN1(rand.Reader, r.MeshKey, signedDigest(pub, enc))
	if err != nil {
		return ExchangeResponse{}, Secret{}, fmt.Errorf("sign exchange: %w", err)
	}
	k, err := sender.Export("", KeySize)
	if err != nil {
		return ExchangeResponse{}, Secret{}, fmt.Errorf("hpke export: %w", err)
	}
	s = Secret{ID: ID(pub), ExpiresAt: r.now().Add(r.ttl())}
	copy(s.Key[:], k)
	clear(k)
	return ExchangeResponse{EncapsulatedKey: enc, Signature: sig, MeshCert: r.MeshCert.Raw}, s, nil
}

func (r *Responder) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Responder) ttl() time.Duration {
	if r.TTL > 0 {
		return r.TTL
	}
	return DefaultServerTTL
}

// ServeHTTP serves POST /privatemode/v1/secret in the API's JSON form (the
// gateway's mapping of the gRPC ExchangeSecret). It does not check the
// Authorization header; the sandbox gateway does that.
func (r *Responder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, 8<<10))
	if err != nil {
		http.Error(w, "read request", http.StatusBadRequest)
		return
	}
	var in ExchangeRequest
	if err := decodeJSON(body, &in); err != nil || len(in.PublicKey) != PublicKeySize {
		http.Error(w, "invalid exchange request", http.StatusBadRequest)
		return
	}
	resp, s, err := r.Respond(in.PublicKey)
	if err != nil {
		http.Error(w, "exchange failed", http.StatusBadRequest)
		return
	}
	if r.OnSecret != nil {
		r.OnSecret(s)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

// IssueMeshCert issues a mesh leaf for the secret service: a fresh ECDSA
// P-256 key and a certificate signed by caKey/caCert (the coordinator's
// mesh CA, e.g. attesttest.Coordinator.MeshCAKey/MeshCACert) with the
// ServerAuth usage, valid from notBefore to notAfter.
func IssueMeshCert(caKey crypto.Signer, caCert *x509.Certificate, notBefore, notAfter time.Time) (*ecdsa.PrivateKey, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate mesh key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "secret-service", Organization: []string{"duo-confidential sandbox (NOT CONFIDENTIAL)"}},
		DNSNames:     []string{"secret-service"},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("create mesh certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parse mesh certificate: %w", err)
	}
	return key, cert, nil
}
