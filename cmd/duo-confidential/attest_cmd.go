package main

// AttestCmd groups attestation commands.
type AttestCmd struct {
	Verify AttestVerifyCmd `cmd:"" help:"Verify an attestation document or raw TDX/SEV-SNP evidence."`
}

// AttestVerifyCmd verifies evidence and prints a report. STUB.
type AttestVerifyCmd struct{}

// Run verifies.
func (c *AttestVerifyCmd) Run(g *Globals) error { return nil }
