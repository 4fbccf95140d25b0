package main

// DemoCmd runs the appliance's main job on embedded, non-confidential test
// evidence. STUB.
type DemoCmd struct{}

// Run runs the demo.
func (c *DemoCmd) Run(g *Globals) error { return nil }
