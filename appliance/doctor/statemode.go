package doctor

import (
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/duo-confidential/duo-confidential/internal/statedir"
)

// ServiceUser is the system user the packages run the appliance as; a
// check run by root expects the state directory to belong to it.
const ServiceUser = "duo-confidential"

// StateFileMode is the most open mode a path inside the state directory
// may have (rel is relative to it, slash-separated): 0700 for directories,
// 0644 for public data (the collateral bundle, the local CA certificate,
// the receipt public key, lock files), 0600 for everything else, since keys and the trust log
// live there.
func StateFileMode(rel string, isDir bool) fs.FileMode {
	if isDir {
		return statedir.DirMode
	}
	base := filepath.Base(rel)
	switch {
	case rel == statedir.CollateralFile,
		rel == statedir.LocalCADir+"/"+statedir.LocalCACertFile,
		rel == statedir.ReceiptsDir+"/"+statedir.ReceiptsPublicKeyFile,
		strings.HasPrefix(rel, statedir.CertmagicDir+"/locks/"),
		base == ".lock", strings.HasSuffix(base, ".lock"):
		return statedir.PublicMode
	}
	return statedir.SecretMode
}
