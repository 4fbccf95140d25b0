// Package vm holds the tests of the air-gapped VM image's shell scripts
// (build-image.sh, smoke-test.sh, firstboot.sh); the scripts themselves are
// the product, this package has no code of its own.
package vm
