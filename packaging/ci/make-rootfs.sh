#!/bin/sh
# make-rootfs.sh DIR — build (once) the Debian bookworm minbase root that the
# packaging install tests chroot into, from Debian's own mirror.
#
# Idempotent: an existing complete root (marked by DIR/.complete, and holding
# every program of INCLUDE below) is kept, so CI re-runs cost nothing; an
# older root without them is rebuilt once. The root is built beside DIR and renamed into place,
# so an interrupted run never leaves a half-built root that looks complete.
# The install tests never touch DIR itself: each test copies it first.
set -eu

dir="${1:?usage: make-rootfs.sh DIR}"
suite="${SUITE:-bookworm}"
mirror="${MIRROR:-http://deb.debian.org/debian}"

# Beyond minbase, for the repository tests (packaging/README.md, "Signed
# repositories"): curl fetches the key and the source files as an admin
# would; dnf and rpm (rpmkeys) install from the dnf repository with
# signature checks.
include="curl,dnf,rpm"
if [ -f "${dir}/.complete" ] && [ -x "${dir}/usr/bin/curl" ] && [ -x "${dir}/usr/bin/dnf" ] && [ -x "${dir}/usr/bin/rpmkeys" ]; then
	echo "rootfs ${dir} already built"
	exit 0
fi
command -v debootstrap >/dev/null 2>&1 || {
	echo "make-rootfs.sh: debootstrap is not installed" >&2
	exit 1
}
parent="$(dirname "${dir}")"
mkdir -p "${parent}"
tmp="$(mktemp -d "${parent}/rootfs.tmp.XXXXXX")"
trap 'rm -rf "${tmp}"' EXIT
# mktemp -d makes the directory 0700; as the chroot's / it must be 0755.
chmod 0755 "${tmp}"
# minbase has dpkg and passwd (useradd, userdel, getent via libc-bin), which
# is all the maintainer scripts need; systemd is deliberately absent (dnf
# does not pull it in), so the scripts' "not booted with systemd" path is
# what runs in the chroot.
timeout 900 debootstrap --variant=minbase --include="${include}" "${suite}" "${tmp}" "${mirror}" >"${tmp}.log" 2>&1 || {
	tail -n 20 "${tmp}.log" >&2
	rm -f "${tmp}.log"
	exit 1
}
rm -f "${tmp}.log"
# Keep the root small and inert: no apt caches.
rm -rf "${tmp}/var/cache/apt/archives/"*.deb "${tmp}/var/lib/apt/lists/"*
touch "${tmp}/.complete"
rm -rf "${dir}"
mv "${tmp}" "${dir}"
trap - EXIT
echo "rootfs ${dir} built"
