//lint:file-ignore SA1019 Recovering a public key needs raw point arithmetic (R, u1·G + u2·R) that crypto/ecdsa and crypto/ecdh do not expose; the deprecated crypto/elliptic calls remain correct for public, non-secret inputs.

// Package idblock derives the SEV-SNP ID key digest that a Contrast guest
// reports for a given launch measurement and guest policy.
package idblock

import (
	"crypto/elliptic"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"sort"

	"github.com/google/go-sev-guest/abi"
)

// Contrast launches every guest with an ID block whose "signature" is the
// constant (r, s) = (2, 1) and whose public key is recovered from that
// signature over the block. The key, and so ID_KEY_DIGEST, is thus a pure
// function of the measurement and policy: checking ID_KEY_DIGEST proves the
// firmware accepted an ID block for exactly these reference values.
const (
	snpIDBlockSize    = 0x60
	snpIDBlockVersion = 1
	snpIDBlockSVN     = 2
	snpAMDPubKeySize  = 0x404 // AMD's public-key structure (SEV-SNP ABI)
	snpAMDCoordSize   = 0x48  // one coordinate, little-endian, zero padded
	snpCurveP384      = 2
)

// snpIDBlock builds the ID block: LD ‖ FAMILY_ID ‖ IMAGE_ID ‖ VERSION ‖
// GUEST_SVN ‖ POLICY, all little-endian.
func snpIDBlock(measurement [48]byte, policy abi.SnpPolicy) [snpIDBlockSize]byte {
	var b [snpIDBlockSize]byte
	copy(b[0:48], measurement[:])
	b[48] = 0x01 // FAMILY_ID
	b[64] = 0x02 // IMAGE_ID
	binary.LittleEndian.PutUint32(b[80:84], snpIDBlockVersion)
	binary.LittleEndian.PutUint32(b[84:88], snpIDBlockSVN)
	binary.LittleEndian.PutUint64(b[88:96], abi.SnpPolicyToBytes(policy))
	return b
}

// snpRecoverIDKey recovers the P-384 public keys for signature (r, s) over
// hash z (SEC 1 v2 §4.1.6 with j = 0), and returns the smallest by (X, Y) so
// the choice is deterministic.
func snpRecoverIDKey(r, s, z *big.Int) (x, y *big.Int, err error) {
	curve := elliptic.P384()
	p, n := curve.Params().P, curve.Params().N
	if r.Sign() <= 0 || r.Cmp(n) >= 0 || s.Sign() <= 0 || s.Cmp(n) >= 0 {
		return nil, nil, errors.New("signature out of range")
	}
	// y² = x³ − 3x + b (mod p) with x = r.
	rx := new(big.Int).Set(r)
	y2 := new(big.Int).Exp(rx, big.NewInt(3), p)
	y2.Sub(y2, new(big.Int).Mul(big.NewInt(3), rx))
	y2.Add(y2, curve.Params().B)
	y2.Mod(y2, p)
	ry := new(big.Int).ModSqrt(y2, p)
	if ry == nil {
		return nil, nil, errors.New("r is not the x coordinate of a curve point")
	}
	rInv := new(big.Int).ModInverse(r, n)
	negZ := new(big.Int).Mod(z, n)
	negZ.Sub(n, negZ).Mod(negZ, n)
	zGx, zGy := curve.ScalarBaseMult(negZ.Bytes())
	type point struct{ x, y *big.Int }
	var keys []point
	for _, cy := range []*big.Int{ry, new(big.Int).Sub(p, ry)} {
		if !curve.IsOnCurve(rx, cy) {
			continue
		}
		sx, sy := curve.ScalarMult(rx, cy, s.Bytes())
		tx, ty := curve.Add(sx, sy, zGx, zGy)
		if tx.Sign() == 0 && ty.Sign() == 0 {
			continue // point at infinity: no key
		}
		qx, qy := curve.ScalarMult(tx, ty, rInv.Bytes())
		if curve.IsOnCurve(qx, qy) {
			keys = append(keys, point{qx, qy})
		}
	}
	if len(keys) == 0 {
		return nil, nil, errors.New("no public key recovers from the signature")
	}
	sort.Slice(keys, func(i, j int) bool {
		if c := keys[i].x.Cmp(keys[j].x); c != 0 {
			return c < 0
		}
		return keys[i].y.Cmp(keys[j].y) < 0
	})
	return keys[0].x, keys[0].y, nil
}

// snpAMDPublicKey encodes a P-384 key in AMD's public-key structure: curve
// ID, Qx and Qy little-endian in 0x48-byte fields, zero padded to 0x404.
func snpAMDPublicKey(x, y *big.Int) []byte {
	out := make([]byte, snpAMDPubKeySize)
	binary.LittleEndian.PutUint32(out[0:4], snpCurveP384)
	putLE(out[4:4+snpAMDCoordSize], x)
	putLE(out[4+snpAMDCoordSize:4+2*snpAMDCoordSize], y)
	return out
}

// putLE writes v little-endian into dst (v fits: P-384 coordinates are 48 bytes).
func putLE(dst []byte, v *big.Int) {
	be := v.Bytes()
	for i := range be {
		dst[i] = be[len(be)-1-i]
	}
}

// KeyDigest returns the ID_KEY_DIGEST a Contrast guest with this launch
// measurement and guest policy reports: SHA-384 of the AMD-format public key
// recovered from the constant ID-block signature (2, 1).
func KeyDigest(measurement [48]byte, policy abi.SnpPolicy) ([48]byte, error) {
	block := snpIDBlock(measurement, policy)
	h := sha512.Sum384(block[:])
	x, y, err := snpRecoverIDKey(big.NewInt(2), big.NewInt(1), new(big.Int).SetBytes(h[:]))
	if err != nil {
		return [48]byte{}, fmt.Errorf("recover the ID key: %w", err)
	}
	return sha512.Sum384(snpAMDPublicKey(x, y)), nil
}
