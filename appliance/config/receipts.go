package config

import (
	"path/filepath"
	"time"

	"github.com/duo-confidential/duo-confidential/internal/statedir"
)

// ReceiptsConfig configures the per-request receipt log (proxy/receipts).
type ReceiptsConfig struct {
	Record             bool          `yaml:"record"`
	OnFailure          string        `yaml:"on_failure"`
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
	Fsync              string        `yaml:"fsync"`
	RotateBytes        int           `yaml:"rotate_bytes"`
	MaxAge             time.Duration `yaml:"max_age"`
	MaxTotalBytes      int           `yaml:"max_total_bytes"`
}

// Receipt settings' values and defaults.
const (
	ReceiptsRefuse     = "refuse"
	ReceiptsWarn       = "warn"
	ReceiptsFsyncCkpt  = "checkpoint"
	ReceiptsFsyncBatch = "batch"

	DefaultReceiptsInterval = time.Minute
	DefaultReceiptsRotate   = 64 << 20
	DefaultReceiptsMaxAge   = 400 * 24 * time.Hour
	DefaultReceiptsMaxTotal = 4 << 30
)

func defaultReceipts() ReceiptsConfig {
	return ReceiptsConfig{
		Record:             true,
		OnFailure:          ReceiptsRefuse,
		CheckpointInterval: DefaultReceiptsInterval,
		Fsync:              ReceiptsFsyncCkpt,
		RotateBytes:        DefaultReceiptsRotate,
		MaxAge:             DefaultReceiptsMaxAge,
		MaxTotalBytes:      DefaultReceiptsMaxTotal,
	}
}

// ReceiptsPath is the receipt log's directory.
func (c *Config) ReceiptsPath() string { return filepath.Join(c.StateDir, statedir.ReceiptsDir) }

func (v *validator) receipts() {
	r := v.c.Receipts
	v.oneOf("receipts.on_failure", r.OnFailure, []string{ReceiptsRefuse, ReceiptsWarn})
	v.oneOf("receipts.fsync", r.Fsync, []string{ReceiptsFsyncCkpt, ReceiptsFsyncBatch})
	v.durationIn("receipts.checkpoint_interval", r.CheckpointInterval, time.Second, time.Hour)
	v.durationIn("receipts.max_age", r.MaxAge, time.Hour, 100*365*24*time.Hour)
	if r.RotateBytes < 64<<10 || r.RotateBytes > 1<<30 {
		v.fail("receipts.rotate_bytes", "%d is outside 65536 … 1073741824 bytes", r.RotateBytes)
	}
	if r.MaxTotalBytes < r.RotateBytes {
		v.fail("receipts.max_total_bytes", "%d must be at least receipts.rotate_bytes (%d)", r.MaxTotalBytes, r.RotateBytes)
	}
}
