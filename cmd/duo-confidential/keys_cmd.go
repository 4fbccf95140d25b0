package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/duo-confidential/duo-confidential/gateway/keys"
)

// KeysCmd groups the commands on the gateway's self-signed JWT keys in
// <state_dir>/keys.
type KeysCmd struct {
	Show   KeysShowCmd   `cmd:"" help:"Show the signing and validation keys (ids, sizes, creation times; never key material)."`
	Rotate KeysRotateCmd `cmd:"" help:"Make the signing key the validation key and generate a new signing key."`
}

// KeysShowCmd prints the keys without changing anything.
type KeysShowCmd struct {
	JSON bool `name:"json" help:"Print a JSON object instead of a table."`
}

// KeysRotateCmd rotates the signing key.
type KeysRotateCmd struct{}

// keysJSON is the `keys show --json` output.
type keysJSON struct {
	Dir    string         `json:"dir"`
	Source string         `json:"source"` // generated, operator or none
	Keys   []keys.KeyInfo `json:"keys"`
}

// keysDir returns <state_dir>/keys and the operator-supplied key options
// from the environment.
func keysDir(g *Globals, cmd string) (string, keys.Options, error) {
	cfg, err := g.LoadConfig()
	if err != nil {
		return "", keys.Options{}, fmt.Errorf("keys %s: %w", cmd, err)
	}
	o, err := keys.LoadEnv(os.Environ())
	if err != nil {
		return "", keys.Options{}, fmt.Errorf("keys %s: %w", cmd, err)
	}
	return cfg.KeysPath(), o, nil
}

// Run prints the keys. It does not generate any: the appliance does that
// on first start (or `keys rotate` does).
func (c *KeysShowCmd) Run(g *Globals) error {
	dir, o, err := keysDir(g, "show")
	if err != nil {
		return err
	}
	o.NoGenerate = true
	out := keysJSON{Dir: dir, Source: "none", Keys: []keys.KeyInfo{}}
	s, err := keys.Open(dir, o)
	switch {
	case err == nil:
		out.Keys = s.Info()
		out.Source = out.Keys[0].Source
	case errors.Is(err, keys.ErrNoKeys):
	default:
		return fmt.Errorf("keys show: %w", err)
	}
	if c.JSON {
		enc := json.NewEncoder(g.stdout())
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	return printKeys(g.stdout(), out)
}

func printKeys(w io.Writer, k keysJSON) error {
	switch k.Source {
	case "none":
		_, err := fmt.Fprintf(w, "No keys in %s yet: the appliance generates a signing key on first start (or run `%s keys rotate`).\n", k.Dir, progName)
		return err
	case keys.SourceOperator:
		fmt.Fprintf(w, "Keys from the environment (%s / %s); %s is not used.\n\n", keys.EnvSigningKey, keys.EnvWorkflowSigningKey, k.Dir)
	default:
		fmt.Fprintf(w, "Keys in %s:\n\n", k.Dir)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ROLE\tID\tBITS\tCREATED")
	for _, ki := range k.Keys {
		created := "-"
		if !ki.Created.IsZero() {
			created = ki.Created.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", ki.Role, ki.ID, ki.Bits, created)
	}
	return tw.Flush()
}

// Run rotates the signing key, or generates the first one if there is
// none yet. It refuses operator-supplied keys.
func (c *KeysRotateCmd) Run(g *Globals) error {
	dir, o, err := keysDir(g, "rotate")
	if err != nil {
		return err
	}
	if o.SigningKeyPEM != nil {
		return fmt.Errorf("keys rotate: the keys come from %s / %s, not from %s: rotate them there (the old signing key becomes %s), then restart the appliance",
			keys.EnvSigningKey, keys.EnvWorkflowSigningKey, dir, keys.EnvValidationKey)
	}
	w := g.stdout()
	ro := o
	ro.NoGenerate = true
	s, err := keys.Open(dir, ro)
	if errors.Is(err, keys.ErrNoKeys) {
		s, err = keys.Open(dir, o)
		if err != nil {
			return fmt.Errorf("keys rotate: %w", err)
		}
		k := s.Signing()
		fmt.Fprintf(w, "There were no keys in %s: generated the first signing key.\nsigning key:  %s (RSA-%d)\n", dir, k.ID, k.Bits())
		return nil
	}
	if err != nil {
		return fmt.Errorf("keys rotate: %w", err)
	}
	k, err := s.Rotate()
	if err != nil {
		return fmt.Errorf("keys rotate: %w", err)
	}
	v := s.Validation()
	prev := v[len(v)-1]
	fmt.Fprintf(w, "Rotated the self-signed JWT signing key in %s.\nsigning key:   %s (RSA-%d, new)\nprevious key:  %s (now validation only; tokens it signed stay valid until they expire)\n\n", dir, k.ID, k.Bits(), prev.ID)
	fmt.Fprintln(w, "A running appliance keeps signing with its current key until it restarts: restart it to sign with the new key.")
	return nil
}
