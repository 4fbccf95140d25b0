package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/duo-confidential/duo-confidential/appliance/config"
	"github.com/duo-confidential/duo-confidential/internal/statedir"
	"github.com/duo-confidential/duo-confidential/proxy/attest"
	"github.com/duo-confidential/duo-confidential/proxy/attest/collateral"
)

// CollateralCmd groups the offline collateral bundle commands: export on a
// connected machine, import and show on the (air-gapped) appliance.
type CollateralCmd struct {
	Import CollateralImportCmd `cmd:"" help:"Load a collateral bundle into the state directory."`
	Export CollateralExportCmd `cmd:"" help:"Fetch collateral on a connected machine and write a bundle."`
	Show   CollateralShowCmd   `cmd:"" help:"Show what a collateral bundle holds and how fresh it is."`
}

// CollateralImportCmd validates a bundle and merges it into the installed
// one (newer fetches win per URL).
type CollateralImportCmd struct {
	File       string `arg:"" type:"existingfile" help:"Bundle written by 'collateral export'."`
	AllowStale bool   `help:"Import even when items are older than attestation.collateral.max_age or past their next update."`
}

// Run imports File into the bundle configured at
// attestation.collateral.bundle, printing one line per item.
func (c *CollateralImportCmd) Run(g *Globals) error {
	cfg, err := g.LoadConfig()
	if err != nil {
		return fmt.Errorf("collateral import: %w", err)
	}
	return runImport(cfg, c, time.Now(), g.stdout(), g.Logger())
}

func runImport(cfg *config.Config, c *CollateralImportCmd, now time.Time, out io.Writer, log *slog.Logger) error {
	in, err := collateral.Load(c.File)
	if err != nil {
		return fmt.Errorf("collateral import: %w", err)
	}
	if in.Len() == 0 {
		return fmt.Errorf("collateral import: %s holds no items", c.File)
	}
	if err := in.Check(now, cfg.Attestation.Collateral.MaxAge); err != nil {
		if !c.AllowStale {
			return fmt.Errorf("collateral import: %s not imported (use --allow-stale to import anyway): %w", c.File, err)
		}
		var names []string
		var se *collateral.StaleError
		if errors.As(err, &se) {
			for _, i := range se.Items {
				names = append(names, fmt.Sprintf("%s [%s]", i.Name, i.Status))
			}
		}
		log.Warn("importing collateral that is not usable as it stands (--allow-stale)", "file", c.File, "items", strings.Join(names, "; "))
	}
	if err := statedir.EnsureDir(cfg.StateDir); err != nil {
		return fmt.Errorf("collateral import: %w", err)
	}
	path := cfg.BundlePath()
	installed, err := collateral.Load(path)
	existed := err == nil
	switch {
	case errors.Is(err, fs.ErrNotExist):
		installed = collateral.New()
	case err != nil:
		// Refuse to overwrite a bundle we cannot read: it may be the only
		// good copy on an air-gapped machine.
		return fmt.Errorf("collateral import: installed bundle is unreadable; move it aside and retry: %w", err)
	}
	changes := installed.Merge(in)
	counts := map[collateral.ChangeKind]int{}
	names := map[string]string{}
	for _, it := range in.Items() {
		names[it.URL] = collateral.Describe(it).Name
	}
	for _, ch := range changes {
		counts[ch.Kind]++
		line := fmt.Sprintf("%-9s %s (fetched %s", ch.Kind, names[ch.URL], ch.New.UTC().Format(time.RFC3339))
		if ch.Kind == collateral.KeptNewer {
			line += ", installed copy fetched " + ch.Old.UTC().Format(time.RFC3339)
		}
		fmt.Fprintln(out, line+")")
	}
	if counts[collateral.Added]+counts[collateral.Updated] > 0 || !existed {
		if err := installed.Save(path); err != nil {
			return fmt.Errorf("collateral import: %w", err)
		}
	}
	fmt.Fprintf(out, "%s: %d added, %d updated, %d unchanged, %d kept (installed copy newer); %d items installed\n",
		path, counts[collateral.Added], counts[collateral.Updated], counts[collateral.Unchanged],
		counts[collateral.KeptNewer], installed.Len())
	return nil
}

// CollateralExportCmd works out the collateral URLs from evidence, fetches
// them from Intel PCS / AMD KDS and writes a bundle for an offline site.
type CollateralExportCmd struct {
	Out       string        `required:"" type:"path" placeholder:"FILE" help:"Bundle file to write."`
	Doc       []string      `name:"doc" sep:"none" type:"existingfile" placeholder:"DOC.json" help:"Attestation document (JSON from /privatemode/v1/attest); repeatable."`
	TDXQuote  []string      `name:"tdx-quote" sep:"none" type:"existingfile" placeholder:"FILE" help:"Raw TDX quote (Intel binary form); repeatable."`
	SNPReport []string      `name:"snp-report" sep:"none" type:"existingfile" placeholder:"FILE" help:"Raw SEV-SNP report, optionally with its certificate table; repeatable."`
	URL       []string      `name:"url" sep:"none" placeholder:"URL" help:"Extra Intel PCS or AMD KDS URL to fetch; repeatable."`
	Merge     string        `type:"existingfile" placeholder:"EXISTING" help:"Start from this bundle; freshly fetched items replace older ones."`
	CABundle  string        `name:"ca-bundle" type:"existingfile" placeholder:"PEM" help:"Extra root CAs (PEM) for outbound TLS; overrides outbound.ca_bundle."`
	Timeout   time.Duration `help:"Per-request timeout; overrides outbound.timeout."`
}

// Run fetches and writes the bundle. A configuration file is optional here
// (the connected machine is often not an appliance), but one named with
// --config must be valid.
func (c *CollateralExportCmd) Run(g *Globals) error {
	var opts collateral.OnlineOptions
	maxAge := attest.DefaultMaxCollateralAge
	cfg, err := g.LoadConfig()
	switch {
	case err == nil:
		opts.CABundle, opts.Timeout = cfg.Outbound.CABundle, cfg.Outbound.Timeout
		maxAge = cfg.Attestation.Collateral.MaxAge
	case g.Config != "":
		return fmt.Errorf("collateral export: %w", err)
	default:
		g.Logger().Warn("configuration not usable; using default outbound settings", "err", err.Error())
	}
	opts.Logger = g.Logger()
	if c.CABundle != "" {
		opts.CABundle = c.CABundle
	}
	if c.Timeout > 0 {
		opts.Timeout = c.Timeout
	}
	online, err := collateral.NewOnline(opts)
	if err != nil {
		return fmt.Errorf("collateral export: %w", err)
	}
	return runExport(g.Context(), c, online, maxAge, g.stdout())
}

// exportURLs collects every URL the evidence files and --url name.
func (c *CollateralExportCmd) exportURLs() ([]string, error) {
	var urls []string
	add := func(files []string, derive func([]byte) ([]string, error)) error {
		for _, f := range files {
			data, err := readLimited(f, attest.MaxDocSize)
			if err != nil {
				return err
			}
			u, err := derive(data)
			if err != nil {
				return fmt.Errorf("%s: %w", f, err)
			}
			urls = append(urls, u...)
		}
		return nil
	}
	if err := add(c.Doc, collateral.DocURLs); err != nil {
		return nil, err
	}
	if err := add(c.TDXQuote, collateral.TDXQuoteURLs); err != nil {
		return nil, err
	}
	if err := add(c.SNPReport, collateral.SNPReportURLs); err != nil {
		return nil, err
	}
	urls = append(urls, c.URL...)
	if len(urls) == 0 {
		return nil, errors.New("nothing to export: give --doc, --tdx-quote, --snp-report or --url")
	}
	return urls, nil
}

func runExport(ctx context.Context, c *CollateralExportCmd, src attest.CollateralSource, maxAge time.Duration, out io.Writer) error {
	urls, err := c.exportURLs()
	if err != nil {
		return fmt.Errorf("collateral export: %w", err)
	}
	b := collateral.New()
	if c.Merge != "" {
		if b, err = collateral.Load(c.Merge); err != nil {
			return fmt.Errorf("collateral export: --merge: %w", err)
		}
	}
	fetched, err := collateral.FetchAll(ctx, src, urls)
	if err != nil {
		// A partial bundle would fail on the air-gapped side much later,
		// so nothing is written.
		return fmt.Errorf("collateral export: no bundle written:\n%w", err)
	}
	b.Merge(fetched)
	if err := b.WriteFile(c.Out); err != nil {
		return fmt.Errorf("collateral export: %w", err)
	}
	if err := collateral.WriteTable(out, collateral.Inspect(b, time.Now(), maxAge)); err != nil {
		return err
	}
	fmt.Fprintf(out, "wrote %d items (%d fetched) to %s; copy it to the appliance and run 'duo-confidential collateral import %s'\n",
		b.Len(), fetched.Len(), c.Out, c.Out)
	return nil
}

// CollateralShowCmd prints a bundle's items and their freshness and fails
// when any item is not OK, so that monitoring can run it.
type CollateralShowCmd struct {
	File   string        `arg:"" optional:"" type:"path" help:"Bundle file (default: the installed bundle, attestation.collateral.bundle)."`
	JSON   bool          `name:"json" help:"Print JSON instead of a table."`
	MaxAge time.Duration `name:"max-age" help:"Maximum item age (default: attestation.collateral.max_age, or 720h without a configuration)."`
}

// Run shows the bundle; the error it returns when something is stale makes
// the exit status non-zero.
func (c *CollateralShowCmd) Run(g *Globals) error {
	cfg, err := g.LoadConfig()
	if err != nil {
		// An explicit bundle file needs no configuration, unless one was
		// named on purpose.
		if c.File == "" || g.Config != "" {
			return fmt.Errorf("collateral show: %w", err)
		}
		g.Logger().Warn("configuration not usable; using the default maximum age", "err", err.Error())
		cfg = nil
	}
	return runShow(cfg, c, time.Now(), g.stdout())
}

// showJSON is the --json output.
type showJSON struct {
	File          string            `json:"file"`
	Created       time.Time         `json:"created,omitzero"`
	MaxAgeSeconds int64             `json:"max_age_seconds"`
	OK            bool              `json:"ok"`
	Items         []collateral.Info `json:"items"`
}

func runShow(cfg *config.Config, c *CollateralShowCmd, now time.Time, out io.Writer) error {
	path, maxAge := c.File, c.MaxAge
	if cfg != nil {
		if path == "" {
			path = cfg.BundlePath()
		}
		if maxAge <= 0 {
			maxAge = cfg.Attestation.Collateral.MaxAge
		}
	}
	if maxAge <= 0 {
		maxAge = attest.DefaultMaxCollateralAge
	}
	b, err := collateral.Load(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("collateral show: no collateral bundle at %s; %s", path, attest.RefreshHint)
	}
	if err != nil {
		return fmt.Errorf("collateral show: %w", err)
	}
	infos := collateral.Inspect(b, now, maxAge)
	checkErr := b.Check(now, maxAge)
	if c.JSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		doc := showJSON{File: path, Created: b.Created(), MaxAgeSeconds: int64(maxAge / time.Second), OK: checkErr == nil, Items: infos}
		if err := enc.Encode(doc); err != nil {
			return fmt.Errorf("collateral show: %w", err)
		}
	} else {
		fmt.Fprintf(out, "%s (written %s, %d items, max age %s)\n", path, b.Created().UTC().Format(time.RFC3339), b.Len(), maxAge)
		if err := collateral.WriteTable(out, infos); err != nil {
			return err
		}
	}
	if checkErr != nil {
		return fmt.Errorf("collateral show: %w", checkErr)
	}
	return nil
}

// readLimited reads a file of at most limit bytes; evidence is small and an
// accidental multi-gigabyte file should not be slurped.
func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read evidence: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read evidence %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("read evidence %s: larger than %d bytes", path, limit)
	}
	return data, nil
}
