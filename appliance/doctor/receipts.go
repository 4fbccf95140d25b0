package doctor

import (
	"context"
	"os"
	"path/filepath"

	"github.com/duo-confidential/duo-confidential/internal/statedir"
	"github.com/duo-confidential/duo-confidential/proxy/attest"
	"github.com/duo-confidential/duo-confidential/proxy/receipts"
)

// checkReceipts verifies the receipt log as `receipts verify` does (chain,
// signed checkpoints, links to the trust log); it never writes it.
func (e *env) checkReceipts(context.Context) checkResult {
	if !e.cfg.Receipts.Record {
		return warn("set receipts.record: true so every model request leaves a receipt (docs/receipts.md)", "receipts.record is false: requests leave no receipts")
	}
	dir := e.cfg.ReceiptsPath()
	if _, err := os.Stat(filepath.Join(dir, statedir.ReceiptsPublicKeyFile)); err != nil {
		return pass("%s: no receipts yet (the appliance starts the log on its first start)", dir)
	}
	pub, err := receipts.ReadPublicKey(dir)
	if err != nil {
		return fail("see docs/receipts.md \"Keys\"", "%v", err)
	}
	var trust []attest.TrustEntry
	if tl, err := attest.OpenTrustLog(e.cfg.TrustLogPath()); err == nil {
		trust, _ = tl.Entries()
	}
	if trust == nil {
		trust = []attest.TrustEntry{}
	}
	rep, err := receipts.VerifyDir(dir, receipts.VerifyOptions{PublicKey: pub, Trust: trust, MaxProblems: 1})
	if err != nil {
		return fail("check the directory's permissions (docs/receipts.md)", "%v", err)
	}
	if !rep.OK() {
		return fail("keep the files for investigation; `duo-confidential receipts verify` lists every problem (docs/receipts.md)",
			"%s: %d problem(s), first: %s", dir, rep.ProblemCount, rep.Problems[0])
	}
	return pass("%s: %d receipts, chain intact, %d signed checkpoints (key %s), %d after the last one",
		dir, rep.Receipts, rep.Checkpoints, receipts.KeyID(pub), rep.Unsigned)
}
