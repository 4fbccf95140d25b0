#!/usr/bin/env bash
# build-image.sh — build the air-gapped duo-confidential VM image (qcow2).
#
#   sudo packaging/vm/build-image.sh [-o OUT.qcow2] [-d duo-confidential.deb]
#
# A Debian bookworm minbase root (debootstrap from Debian's mirror) with
# systemd, udev, systemd-networkd (DHCP on every Ethernet link),
# linux-image-amd64 and the duo-confidential .deb, on an MBR disk:
#   partition 1  vfat "DUOBOOT" 160 MiB, bootable: SYSLINUX, kernel, initrd
#   partition 2  ext4 "duoroot": the root
# Made without loop devices or mounts (mkfs.vfat + mtools + `syslinux
# --install` on the partition file, `mkfs.ext4 -d`), so it runs in a
# container too. BIOS boot; serial console on ttyS0 and tty0.
# duo-confidential.service is installed but off: on first boot
# duo-confidential-firstboot.service reads the DUOSEED seed disk, checks the
# configuration and only then enables and starts it (firstboot.sh).
#
# Host packages (Debian bookworm):
#   apt-get install --no-install-recommends debootstrap syslinux \
#     syslinux-common dosfstools mtools e2fsprogs fdisk qemu-utils
# (plus Go, unless -d names a built .deb). Root is needed for debootstrap
# and chroot.
#
# Options / environment:
#   -o OUT      image to write (default dist/duo-confidential-vm.qcow2)
#   -d DEB      the package to install (default: built with build-packages)
#   WITH_SSH=1  also install openssh-server (off by default: the appliance
#               needs no shell access; host keys are made on first start)
#   MIRROR, SUITE  Debian mirror and suite (deb.debian.org, bookworm)
#   CACHE_DIR   debootstrap's .deb cache, kept between runs
#               (default /var/cache/duo-confidential-vm/debs)
#   KEEP_WORK=1 keep the work directory (the root and partition files)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "${here}/../.." && pwd)"
out="${repo}/dist/duo-confidential-vm.qcow2"
deb=""
while getopts "o:d:h" opt; do
	case "${opt}" in
	o) out="${OPTARG}" ;;
	d) deb="${OPTARG}" ;;
	*)
		sed -n '2,4p' "${BASH_SOURCE[0]}"
		exit 2
		;;
	esac
done
mirror="${MIRROR:-http://deb.debian.org/debian}"
suite="${SUITE:-bookworm}"
cache="${CACHE_DIR:-/var/cache/duo-confidential-vm/debs}"
boot_mib=160

log() { printf '==> %s (%ds)\n' "$*" "${SECONDS}"; }
die() {
	echo "build-image.sh: $*" >&2
	exit 1
}

[[ "$(id -u)" -eq 0 ]] || die "run as root (debootstrap and chroot need it)"
for tool in debootstrap mkfs.vfat mcopy syslinux mkfs.ext4 sfdisk qemu-img; do
	command -v "${tool}" >/dev/null 2>&1 || die "${tool} is missing; see the package list in this script's header"
done
mbr=/usr/lib/syslinux/mbr/mbr.bin
[[ -f "${mbr}" ]] || die "${mbr} is missing (apt-get install syslinux-common)"

work="$(mktemp -d /var/tmp/duo-vm.XXXXXX)"
cleanup() {
	if [[ "${KEEP_WORK:-}" == 1 ]]; then
		echo "work directory kept: ${work}"
	else
		rm -rf "${work}"
	fi
}
trap cleanup EXIT
root="${work}/root"
mkdir -p "${root}" "${cache}"
chmod 0755 "${root}"

if [[ -z "${deb}" ]]; then
	log "building the .deb"
	PATH="/usr/local/go/bin:${PATH}" go run -C "${repo}/packaging" ./cmd/build-packages -format deb -arch amd64 -out "${work}/dist" >/dev/null
	deb="$(ls "${work}"/dist/duo-confidential_*_amd64.deb)"
fi
[[ -f "${deb}" ]] || die "no package at ${deb}"

pkgs=systemd,systemd-sysv,udev,dbus,kmod,linux-image-amd64,initramfs-tools,zstd,iproute2,procps
if [[ "${WITH_SSH:-}" == 1 ]]; then
	pkgs="${pkgs},openssh-server"
fi
log "debootstrap ${suite} from ${mirror}"
if ! timeout 1200 debootstrap --variant=minbase --cache-dir="${cache}" --include="${pkgs}" \
	"${suite}" "${root}" "${mirror}" >"${work}/debootstrap.log" 2>&1; then
	tail -n 30 "${work}/debootstrap.log" >&2
	die "debootstrap failed"
fi

log "installing $(basename "${deb}")"
cp "${deb}" "${root}/tmp/duo-confidential.deb"
chroot "${root}" dpkg -i /tmp/duo-confidential.deb >"${work}/dpkg.log" 2>&1 || {
	cat "${work}/dpkg.log" >&2
	die "dpkg -i failed"
}
rm -f "${root}/tmp/duo-confidential.deb"
# The package enables the service; in the image the first-boot unit does,
# once there is a configuration.
chroot "${root}" systemctl disable duo-confidential.service >/dev/null 2>&1

log "configuring the root"
install -d -m 0755 "${root}/usr/lib/duo-confidential-vm"
install -m 0755 "${here}/firstboot.sh" "${root}/usr/lib/duo-confidential-vm/firstboot"
install -m 0644 "${here}/duo-confidential-firstboot.service" "${root}/usr/lib/systemd/system/"
chroot "${root}" systemctl enable duo-confidential-firstboot.service systemd-networkd.service >/dev/null 2>&1
# No interactive first-boot questions on an unattended appliance.
chroot "${root}" systemctl mask systemd-firstboot.service >/dev/null 2>&1
cat >"${root}/etc/systemd/network/80-dhcp.network" <<'NET'
# Every Ethernet link gets its address by DHCP.
[Match]
Type=ether

[Network]
DHCP=yes
NET
echo duo-confidential >"${root}/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tduo-confidential\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"${root}/etc/hosts"
# An empty machine-id: each VM makes its own on first boot.
: >"${root}/etc/machine-id"
rm -f "${root}/var/lib/dbus/machine-id"
if [[ "${WITH_SSH:-}" == 1 ]]; then
	# Host keys made in the build would be shared by every VM: make them on
	# first start instead.
	rm -f "${root}"/etc/ssh/ssh_host_*
	install -d "${root}/etc/systemd/system/ssh.service.d"
	printf '[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n' \
		>"${root}/etc/systemd/system/ssh.service.d/host-keys.conf"
fi
# Smaller image: no apt lists or caches, no kernel drivers a server VM
# never uses (the initrd keeps its own copy of what it loads).
rm -rf "${root}"/var/cache/apt/*.bin "${root}"/var/cache/apt/archives/*.deb "${root}"/var/lib/apt/lists/*
kver="$(basename "$(ls -d "${root}"/lib/modules/*)")"
for d in drivers/gpu drivers/media drivers/net/wireless drivers/infiniband drivers/bluetooth \
	drivers/staging drivers/isdn sound net/wireless net/mac80211 net/bluetooth; do
	rm -rf "${root}/lib/modules/${kver}/kernel/${d}"
done
chroot "${root}" depmod "${kver}"
rm -f "${root}"/var/log/*.log "${root}/etc/resolv.conf"

log "making the disk"
uuid="$(cat /proc/sys/kernel/random/uuid)"
printf 'UUID=%s\t/\text4\terrors=remount-ro\t0\t1\n' "${uuid}" >"${root}/etc/fstab"
root_mib=$(($(du -sm "${root}" | cut -f1) * 13 / 10 + 256))
boot="${work}/boot.img"
rootimg="${work}/root.img"
truncate -s "${boot_mib}M" "${boot}"
mkfs.vfat -n DUOBOOT "${boot}" >/dev/null
cat >"${work}/syslinux.cfg" <<CFG
SERIAL 0 115200
DEFAULT duo
PROMPT 0
TIMEOUT 0
LABEL duo
  LINUX /vmlinuz
  INITRD /initrd.img
  APPEND root=UUID=${uuid} ro console=tty0 console=ttyS0,115200n8
CFG
mcopy -i "${boot}" "${root}/boot/vmlinuz-${kver}" ::/vmlinuz
mcopy -i "${boot}" "${root}/boot/initrd.img-${kver}" ::/initrd.img
mcopy -i "${boot}" "${work}/syslinux.cfg" ::/syslinux.cfg
syslinux --install "${boot}"
truncate -s "${root_mib}M" "${rootimg}"
mkfs.ext4 -q -F -L duoroot -U "${uuid}" -d "${root}" "${rootimg}" "${root_mib}M"

raw="${work}/disk.raw"
total_mib=$((1 + boot_mib + root_mib + 1))
truncate -s "${total_mib}M" "${raw}"
sfdisk --quiet "${raw}" <<PART
label: dos
start=1MiB, size=${boot_mib}MiB, type=c, bootable
start=$((1 + boot_mib))MiB, size=${root_mib}MiB, type=83
PART
dd if="${mbr}" of="${raw}" bs=440 count=1 conv=notrunc status=none
dd if="${boot}" of="${raw}" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="${rootimg}" of="${raw}" bs=1M seek=$((1 + boot_mib)) conv=notrunc,sparse status=none

log "converting to qcow2"
mkdir -p "$(dirname "${out}")"
qemu-img convert -c -O qcow2 "${raw}" "${out}.tmp"
mv "${out}.tmp" "${out}"
log "done: ${out} ($(du -h "${out}" | cut -f1), virtual ${total_mib} MiB, kernel ${kver})"
