package gitlabtest

import (
	"encoding/json"
	"net"
	"net/http"
	"testing"
)

func TestServeTLS(t *testing.T) {
	iss, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := Serve(iss, ln)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if iss.URL() != s.URL {
		t.Fatalf("issuer URL %q, served at %q", iss.URL(), s.URL)
	}
	resp, err := s.Client.Get(s.URL + DiscoveryPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil || d.Issuer != s.URL || d.JWKSURI != s.URL+JWKSPath {
		t.Fatalf("discovery %+v: %v", d, err)
	}
	// A client without the throwaway root must refuse the certificate.
	if _, err := http.Get(s.URL + DiscoveryPath); err == nil {
		t.Error("the demo certificate is trusted by the system roots")
	}
}

func TestServeRefusesNonLoopback(t *testing.T) {
	iss, _ := New(Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fake := fakeAddrListener{ln}
	if _, err := Serve(iss, fake); err == nil {
		t.Error("served on a non-loopback address")
	}
}

type fakeAddrListener struct{ net.Listener }

func (fakeAddrListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1} }

func TestServeWithAPI(t *testing.T) {
	iss, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := ServeWithAPI(iss, NewAPI("tok"), ln)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	req, _ := http.NewRequest("GET", s.URL+"/api/v4/projects/1/issues/1", nil)
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := s.Client.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("API: %v %v", resp, err)
	}
	resp.Body.Close()
	resp, err = s.Client.Get(s.URL + "/oauth/discovery/keys")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("JWKS: %v %v", resp, err)
	}
	resp.Body.Close()
	req, _ = http.NewRequest("GET", s.URL+"/api/v4/user", nil)
	if resp, err = s.Client.Do(req); err != nil || resp.StatusCode != 401 {
		t.Fatalf("API without the token: %v %v", resp, err)
	}
	resp.Body.Close()
}
