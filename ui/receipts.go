package ui

import (
	"time"

	"github.com/duo-confidential/duo-confidential/proxy/receipts"
)

// Receipts is the per-request receipt log's state: counters, the newest
// receipts (no content is in them) and the last verification of the files.
type Receipts struct {
	receipts.Stats
	Dir           string             `json:"dir"`
	PublicKeyFile string             `json:"public_key_file"`
	Recent        []receipts.Receipt `json:"recent"`
	Verification  *ReceiptsVerified  `json:"verification,omitempty"`
}

// ReceiptsVerified is the outcome of the last verification of the receipt
// files (chain, signatures, trust links), run in the background.
type ReceiptsVerified struct {
	At          time.Time `json:"at"`
	OK          bool      `json:"ok"`
	Receipts    uint64    `json:"receipts"`
	Checkpoints int       `json:"checkpoints"`
	Unsigned    uint64    `json:"unsigned"`
	Torn        []string  `json:"torn,omitempty"`
	Problems    []string  `json:"problems,omitempty"`
	Error       string    `json:"error,omitempty"`
}

// maxRecentReceipts bounds the receipts in the status document.
const maxRecentReceipts = 20

func receiptsState(src Sources) *Receipts {
	if src.Receipts == nil {
		return nil
	}
	r := src.Receipts()
	if r == nil {
		return nil
	}
	if len(r.Recent) > maxRecentReceipts {
		r.Recent = r.Recent[:maxRecentReceipts]
	}
	if r.Recent == nil {
		r.Recent = []receipts.Receipt{}
	}
	return r
}
