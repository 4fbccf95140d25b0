package main

// CollateralCmd groups the offline collateral bundle commands. STUB.
type CollateralCmd struct {
	Import CollateralImportCmd `cmd:"" help:"Load a collateral bundle into the state directory."`
	Export CollateralExportCmd `cmd:"" help:"Fetch collateral on a connected machine and write a bundle."`
	Show   CollateralShowCmd   `cmd:"" help:"Show what a collateral bundle holds and how fresh it is."`
}

// CollateralImportCmd imports a bundle. STUB.
type CollateralImportCmd struct{}

// Run imports.
func (c *CollateralImportCmd) Run(g *Globals) error { return nil }

// CollateralExportCmd exports a bundle. STUB.
type CollateralExportCmd struct{}

// Run exports.
func (c *CollateralExportCmd) Run(g *Globals) error { return nil }

// CollateralShowCmd shows a bundle. STUB.
type CollateralShowCmd struct{}

// Run shows.
func (c *CollateralShowCmd) Run(g *Globals) error { return nil }
