package appliance

import (
	"sync"
	"time"

	"github.com/duo-confidential/duo-confidential/appliance/config"
	"github.com/duo-confidential/duo-confidential/proxy"
	"github.com/duo-confidential/duo-confidential/proxy/attest"
	"github.com/duo-confidential/duo-confidential/proxy/receipts"
	"github.com/duo-confidential/duo-confidential/proxy/secret"
	"github.com/duo-confidential/duo-confidential/ui"
)

// openReceipts opens the receipt log when receipts.record is on.
func (a *Appliance) openReceipts() error {
	rc := a.o.Config.Receipts
	if !rc.Record {
		a.log.Warn("receipts.record is off: requests leave no receipts")
		return nil
	}
	o := receipts.Options{
		Dir:            a.o.Config.ReceiptsPath(),
		Interval:       rc.CheckpointInterval,
		MaxFileBytes:   int64(rc.RotateBytes),
		MaxAge:         rc.MaxAge,
		MaxTotalBytes:  int64(rc.MaxTotalBytes),
		SyncEveryBatch: rc.Fsync == config.ReceiptsFsyncBatch,
		Logger:         a.log.With("part", "receipts"),
		Create:         a.o.ReceiptFiles,
	}
	if rc.OnFailure == config.ReceiptsWarn {
		o.OnFailure = receipts.Warn
	}
	l, err := receipts.Open(o)
	if err != nil {
		return err
	}
	a.receipts = l
	return nil
}

// Receipts returns the receipt log, nil when receipts are off.
func (a *Appliance) Receipts() *receipts.Log { return a.receipts }

// receiptsReady is false while requests are refused because receipts
// cannot be written (receipts.on_failure: refuse), with the reason.
func (a *Appliance) receiptsReady() (bool, string) {
	if a.receipts == nil || a.receipts.Admit() == nil {
		return true, ""
	}
	st := a.receipts.Stats()
	why := "request receipts cannot be written and receipts.on_failure is refuse"
	if st.LastError != "" {
		why += ": " + st.LastError
	} else if st.QueueDepth >= st.QueueCapacity {
		why += ": the receipt queue is full"
	}
	return false, why
}

// closeReceipts writes what is queued and a final signed checkpoint.
func (a *Appliance) closeReceipts() error {
	if a.receipts == nil {
		return nil
	}
	return a.receipts.Close()
}

// trustChanged tells the receipt log which trust-log entry is current
// after each accepted attestation.
func (a *Appliance) trustChanged(st secret.Status) {
	res := st.Attestation
	if a.receipts == nil || res == nil || res.Verdict != attest.VerdictAccepted {
		return
	}
	tl, err := attest.OpenTrustLog(a.o.Config.TrustLogPath())
	if err != nil {
		a.log.Warn("receipts: trust log unreadable; receipts keep the previous link", "error", err)
		return
	}
	entries, err := tl.Entries()
	if err != nil {
		a.log.Warn("receipts: trust log unreadable; receipts keep the previous link", "error", err)
		return
	}
	for i := len(entries) - 1; i >= 0; i-- {
		e := entries[i]
		if e.ManifestSHA256 == res.ManifestSHA256 && e.EvidenceSHA256 == res.EvidenceSHA256 {
			from := st.LastAttestedAt
			if from.IsZero() {
				from = time.Now()
			}
			a.receipts.SetTrust(receipts.TrustLink{Seq: e.Seq, Hash: receipts.TrustHash(e.Hash), Platform: string(e.Platform),
				EvidenceSHA256: e.EvidenceSHA256, ManifestSHA256: e.ManifestSHA256, TCBStatus: e.TCBStatus}, from)
			return
		}
	}
}

// receiptSink adapts the receipt log to the proxy's ReceiptSink: it takes
// the trust link current when the request was sent and hashes the user id.
type receiptSink struct{ l *receipts.Log }

// Admit asks the log whether a request may proceed.
func (s receiptSink) Admit() error { return s.l.Admit() }

// Receipt records one request.
func (s receiptSink) Receipt(r proxy.RequestRecord) {
	rc := receipts.Receipt{
		Time: r.Start.UTC().Truncate(time.Millisecond), Route: r.Route, Feature: r.Feature, Workflow: r.Workflow, Instance: r.Instance,
		UserHash: s.l.HashUser(r.Instance, r.User),
		Model:    r.Model, Status: r.Status, Outcome: r.Outcome,
		InTokens: r.InTokens, OutTokens: r.OutTokens, Millis: r.Duration.Milliseconds(),
	}
	if !r.Sent.IsZero() {
		rc.RequestSHA256, rc.SecretID = receipts.Digest(r.RequestSHA256), r.SecretID
		if l, ok := s.l.TrustAt(r.Sent); ok {
			rc.Trust = &l
		}
	}
	if r.Received {
		rc.ResponseSHA256 = receipts.Digest(r.ResponseSHA256)
	}
	s.l.Record(rc)
}

// receiptsVerifyEvery is how often the admin UI's view of the receipt
// files is re-verified (in the background, when the UI asks).
const receiptsVerifyEvery = 5 * time.Minute

// receiptsView gives the admin UI the log's state and the last background
// verification of its files.
type receiptsView struct {
	a       *Appliance
	mu      sync.Mutex
	last    *ui.ReceiptsVerified
	running bool
}

func (v *receiptsView) state() *ui.Receipts {
	l := v.a.receipts
	if l == nil {
		return nil
	}
	v.mu.Lock()
	if !v.running && (v.last == nil || time.Since(v.last.At) > receiptsVerifyEvery) {
		v.running = true
		go v.verify()
	}
	last := v.last
	v.mu.Unlock()
	return &ui.Receipts{Stats: l.Stats(), Dir: l.Dir(), PublicKeyFile: l.PublicKeyPath(), Recent: l.Recent(), Verification: last}
}

// verify checks the receipt files against the trust log, as
// `receipts verify` does.
func (v *receiptsView) verify() {
	l := v.a.receipts
	res := &ui.ReceiptsVerified{At: time.Now().UTC()}
	rep, err := func() (*receipts.Report, error) {
		pub, err := receipts.ReadPublicKey(l.Dir())
		if err != nil {
			return nil, err
		}
		tl, err := attest.OpenTrustLog(v.a.o.Config.TrustLogPath())
		if err != nil {
			return nil, err
		}
		trust, err := tl.Entries()
		if err != nil {
			return nil, err
		}
		return receipts.VerifyDir(l.Dir(), receipts.VerifyOptions{PublicKey: pub, Trust: trust, MaxProblems: 10})
	}()
	if err != nil {
		res.Error = err.Error()
	} else {
		res.OK, res.Receipts, res.Checkpoints, res.Unsigned = rep.OK(), rep.Receipts, rep.Checkpoints, rep.Unsigned
		res.Torn, res.Problems = rep.Torn, rep.Problems
	}
	v.mu.Lock()
	v.last, v.running = res, false
	v.mu.Unlock()
}
