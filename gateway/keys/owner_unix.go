//go:build unix

package keys

import (
	"io/fs"
	"syscall"
)

// ownedByRoot reports whether the file's owner is uid 0.
func ownedByRoot(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Uid == 0
}
