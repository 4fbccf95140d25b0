package attest

import (
	"github.com/duo-confidential/duo-confidential/proxy/attest/idblock"
	"github.com/google/go-sev-guest/abi"
)

// SNPIDKeyDigest returns the ID_KEY_DIGEST a Contrast guest with this launch
// measurement and guest policy reports (see package idblock).
func SNPIDKeyDigest(measurement [48]byte, policy abi.SnpPolicy) ([48]byte, error) {
	d, err := idblock.KeyDigest(measurement, policy)
	if err != nil {
		return d, newError(ClassPolicy, "ID_KEY_DIGEST", err, "derive the ID key from the reference values")
	}
	return d, nil
}
