#!/bin/sh
# duo-confidential-firstboot — configure the VM image from its seed disk.
#
# Installed as /usr/lib/duo-confidential-vm/firstboot and run once by
# duo-confidential-firstboot.service, before duo-confidential.service.
# It looks for a filesystem labelled DUOSEED (vfat or ISO 9660; override the
# label with duo.seed=LABEL on the kernel command line), mounts it read-only
# and installs from it:
#
#   config.yaml           -> /etc/duo-confidential/config.yaml (root:duo-confidential 0640), required
#   privatemode-api-key   -> /etc/duo-confidential/privatemode-api-key (duo-confidential 0600), required
#   collateral.json       -> imported with `duo-confidential collateral import` (optional)
#   root-password-hash    -> root's password (a crypt(3) hash, e.g. `openssl passwd -6`) for the console (optional)
#   authorized_keys       -> /root/.ssh/authorized_keys, images built with WITH_SSH=1 only (optional)
#
# Then `duo-confidential config check` runs as the service user; only if it
# passes is duo-confidential.service enabled and started and the marker
# written, so a missing or bad seed leaves the service off and is retried on
# the next boot. Nothing from the seed is printed: it holds a secret.
set -eu

user=duo-confidential
etc=/etc/duo-confidential
marker=/var/lib/duo-confidential-firstboot/done
mnt=/run/duo-seed

say() { echo "duo-confidential-firstboot: $*"; }

label=DUOSEED
read -r cmdline </proc/cmdline
for arg in ${cmdline}; do
	case "${arg}" in
	duo.seed=*) label="${arg#duo.seed=}" ;;
	esac
done

# The seed disk may appear after this unit starts: wait up to 30 s for udev.
dev=""
i=0
while [ "${i}" -lt 30 ]; do
	if [ -e "/dev/disk/by-label/${label}" ]; then
		dev="/dev/disk/by-label/${label}"
		break
	fi
	udevadm settle --timeout=1 >/dev/null 2>&1 || true
	sleep 1
	i=$((i + 1))
done
if [ -z "${dev}" ]; then
	say "no disk labelled ${label}: attach a seed disk (docs/operations.md, VM image) and reboot; duo-confidential stays off"
	exit 0
fi

mkdir -p "${mnt}"
mount -o ro "${dev}" "${mnt}"
trap 'umount "${mnt}" 2>/dev/null || true' EXIT

for f in config.yaml privatemode-api-key; do
	if [ ! -f "${mnt}/${f}" ]; then
		say "the seed disk has no ${f}; duo-confidential stays off"
		exit 1
	fi
done

install -o root -g "${user}" -m 0640 "${mnt}/config.yaml" "${etc}/config.yaml"
install -o "${user}" -g "${user}" -m 0600 "${mnt}/privatemode-api-key" "${etc}/privatemode-api-key"
if ! grep -q "api_key_file: *\"\{0,1\}${etc}/privatemode-api-key" "${etc}/config.yaml"; then
	say "warning: config.yaml does not set privatemode.api_key_file: ${etc}/privatemode-api-key"
fi

as_user() { setpriv --reuid="${user}" --regid="${user}" --init-groups -- "$@"; }

if [ -f "${mnt}/collateral.json" ]; then
	cp "${mnt}/collateral.json" /run/duo-collateral.json
	chown "${user}:${user}" /run/duo-collateral.json
	chmod 0600 /run/duo-collateral.json
	as_user /usr/bin/duo-confidential collateral import --config "${etc}/config.yaml" /run/duo-collateral.json
	rm -f /run/duo-collateral.json
fi
if [ -f "${mnt}/root-password-hash" ]; then
	usermod -p "$(head -n 1 "${mnt}/root-password-hash")" root
	say "root password set from the seed"
fi
if [ -f "${mnt}/authorized_keys" ]; then
	if [ -x /usr/sbin/sshd ]; then
		install -d -m 0700 /root/.ssh
		install -m 0600 "${mnt}/authorized_keys" /root/.ssh/authorized_keys
		say "root's authorized_keys installed"
	else
		say "authorized_keys ignored: this image has no ssh server (build with WITH_SSH=1)"
	fi
fi

if ! as_user /usr/bin/duo-confidential config check --config "${etc}/config.yaml"; then
	say "config check failed; fix config.yaml on the seed disk and reboot; duo-confidential stays off"
	exit 1
fi

systemctl enable duo-confidential.service
mkdir -p "$(dirname "${marker}")"
date -u +%Y-%m-%dT%H:%M:%SZ >"${marker}"
say "configured from ${label}; starting duo-confidential"
systemctl start --no-block duo-confidential.service
