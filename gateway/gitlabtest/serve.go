package gitlabtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"strings"
	"time"
)

// Server is the demo issuer served over HTTPS on a loopback listener with a
// throwaway certificate, as the demo command and end-to-end tests run it.
type Server struct {
	// URL is the issuer URL (https://127.0.0.1:port), already set on the
	// Issuer.
	URL string
	// Client trusts only the throwaway certificate; give it to the
	// gateway's JWKS fetcher.
	Client *http.Client
	// CertPEM is the throwaway certificate, for a CA bundle file
	// (outbound.ca_bundle) of a separately started appliance.
	CertPEM []byte
	srv     *http.Server
	done    chan error
}

// Serve serves iss on ln over TLS with a fresh self-signed certificate for
// ln's address, and sets iss's URL to it.
func Serve(iss *Issuer, ln net.Listener) (*Server, error) {
	return serveTLS(iss, iss.Handler(), ln)
}

// ServeWithAPI is Serve plus the demo REST/GraphQL API under /api/, so the
// Agent Platform's executor-tunnelled calls reach the same demo GitLab.
func ServeWithAPI(iss *Issuer, api *API, ln net.Listener) (*Server, error) {
	// The demo API (the user's token, as the executor sends it) and the
	// admin API stand-in (an admin's token, `gitlab connect`) share
	// /api/graphql and /api/v4/user, as on a real GitLab: the token decides.
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/api/") ||
			(r.Header.Get("Authorization") != "Bearer "+api.Token && iss.adminRoute("", r.URL.Path) != nil) {
			iss.Handler().ServeHTTP(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})
	return serveTLS(iss, h, ln)
}

func serveTLS(iss *Issuer, h http.Handler, ln net.Listener) (*Server, error) {
	host, _, err := net.SplitHostPort(ln.Addr().String())
	if err != nil {
		return nil, fmt.Errorf("demo issuer address: %w", err)
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return nil, errors.New("the demo issuer serves on loopback only")
	}
	cert, pool, err := selfSigned(ip)
	if err != nil {
		return nil, err
	}
	s := &Server{
		URL:     "https://" + ln.Addr().String(),
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}),
		Client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			Proxy:           nil, // loopback: never through an HTTPS_PROXY
		}},
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
			ErrorLog:          nil,
		},
		done: make(chan error, 1),
	}
	iss.SetURL(s.URL)
	go func() { s.done <- s.srv.ServeTLS(ln, "", "") }()
	return s, nil
}

// Close stops the server.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if serr := <-s.done; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// selfSigned makes a one-day certificate for ip and a pool that trusts it.
func selfSigned(ip net.IP) (tls.Certificate, *x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("demo issuer key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("demo issuer serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "duo-confidential DEMO GitLab (not GitLab)"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{ip},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("demo issuer certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool, nil
}
