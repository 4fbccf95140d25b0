package envelope

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"time"
)

// OCSPPolicy is the client's NVIDIA OCSP acceptance policy sent in the
// Privatemode-NVIDIA-OCSP-Policy header; "good" is always allowed.
type OCSPPolicy struct {
	// AllowRevoked accepts "revoked" if the revocation happened at or after RevokedNotBefore.
	AllowRevoked bool
	// AllowUnknown accepts the "unknown" OCSP status.
	AllowUnknown bool
	// RevokedNotBefore is the earliest acceptable revocation time (sent as Unix seconds).
	RevokedNotBefore time.Time
}

// Header returns "rules=allow-good[,allow-revoked][,allow-unknown]; revocation-time-not-before=<unix>".
func (p OCSPPolicy) Header() string {
	b := make([]byte, 0, 96)
	b = append(b, "rules=allow-good"...)
	if p.AllowRevoked {
		b = append(b, ",allow-revoked"...)
	}
	if p.AllowUnknown {
		b = append(b, ",allow-unknown"...)
	}
	b = append(b, "; revocation-time-not-before="...)
	b = strconv.AppendInt(b, p.RevokedNotBefore.Unix(), 10)
	return string(b)
}

// OCSPMAC returns hex(HMAC-SHA256(key, header)) for the Privatemode-NVIDIA-OCSP-Policy-MAC header.
func OCSPMAC(key [32]byte, header string) string {
	m := hmac.New(sha256.New, key[:])
	m.Write([]byte(header))
	return hex.EncodeToString(m.Sum(nil))
}

// VerifyOCSPMAC reports in constant time whether mac is OCSPMAC(key, header).
func VerifyOCSPMAC(key [32]byte, header, mac string) bool {
	return hmac.Equal([]byte(OCSPMAC(key, header)), []byte(mac))
}
