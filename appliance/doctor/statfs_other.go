//go:build !linux

package doctor

import "errors"

// freeBytes is not measured outside Linux, the appliance's platform.
func freeBytes(string) (uint64, error) {
	return 0, errors.New("not measured on this platform")
}
