package attest

import (
	"io"
	"sync"

	"github.com/google/logger"
)

var silenceOnce sync.Once

// silenceVendorLogs redirects github.com/google/logger, which go-tdx-guest's
// verify package initialises to write warnings on stdout, to io.Discard.
// Stdout belongs to our CLI output (JSON reports); the libraries' warnings
// carry nothing our own Result does not say better. The logger is process
// global by the library's design, so this runs once.
func silenceVendorLogs() {
	silenceOnce.Do(func() {
		logger.Init("attest", false, false, io.Discard)
	})
}
