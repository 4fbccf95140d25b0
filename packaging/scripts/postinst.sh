#!/bin/sh
# duo-confidential postinst (deb) / %post (rpm).
#
# First install: create the user and state directory, enable the service but
# do NOT start it: the shipped configuration has no Privatemode API key and
# no GitLab URL, so the service could not serve anything yet. The admin
# configures it, checks it (`duo-confidential doctor --offline`) and runs
# `systemctl start duo-confidential`. Enabled, it starts at the next boot.
# Upgrade: restart the service if it is running (try-restart), and leave the
# enable state as the admin set it. Existing configuration, keys and state
# are never written.
set -e
# Argument conventions handled (one set of scripts serves both formats):
#   deb: preinst install|upgrade [old]; postinst configure [old-configured];
#        postinst abort-upgrade|abort-remove|abort-deconfigure;
#        prerm remove|upgrade|deconfigure|failed-upgrade;
#        postrm remove|purge|upgrade|failed-upgrade|abort-install|abort-upgrade|disappear
#   rpm: %pre/%post $1 = 1 (install) or 2 (upgrade);
#        %preun/%postun $1 = 0 (erase) or 1 (upgrade)
#
# Helpers shared with the other scripts are copied, not sourced (dpkg and
# rpm run each script alone); the packaging tests check the copies agree.

unit=duo-confidential.service
user=duo-confidential
statedir=/var/lib/duo-confidential
confdir=/etc/duo-confidential

# systemd_running: true when systemd is PID 1 here. False in chroots, image
# builds and most containers, where starting or reloading must be skipped.
systemd_running() {
	[ -d /run/systemd/system ]
}

# have_systemctl: `systemctl enable/disable` only edit symlinks and work
# without a running systemd, so they run in chroots and image builds too.
have_systemctl() {
	command -v systemctl >/dev/null 2>&1
}

# ensure_user creates the system user and group unless they exist. Never
# changes an existing account (an admin may have pinned its uid).
ensure_user() {
	if ! getent group "${user}" >/dev/null 2>&1; then
		groupadd --system "${user}"
	fi
	if ! getent passwd "${user}" >/dev/null 2>&1; then
		nologin=/usr/sbin/nologin
		[ -x "${nologin}" ] || nologin=/sbin/nologin
		useradd --system --gid "${user}" --home-dir "${statedir}" \
			--no-create-home --shell "${nologin}" \
			--comment "duo-confidential service" "${user}"
	fi
}

# ensure_dirs creates the state directory for the CLI (admin set-password,
# keys rotate run as the service user before the first start) and sets the
# modes systemd's StateDirectory= would. An existing directory keeps its
# contents untouched: only the directory itself is re-owned and tightened.
ensure_dirs() {
	if [ ! -d "${statedir}" ]; then
		mkdir -p "${statedir}"
	fi
	chown "${user}:${user}" "${statedir}"
	chmod 0700 "${statedir}"
	if [ -d "${confdir}" ]; then
		chown "root:${user}" "${confdir}"
		chmod 0750 "${confdir}"
	fi
}

first_install() {
	ensure_user
	ensure_dirs
	if systemd_running; then
		systemctl daemon-reload || true
	fi
	if have_systemctl; then
		systemctl --no-reload enable "${unit}" >/dev/null 2>&1 || true
		echo "duo-confidential installed and enabled (it starts at boot), not started. Next:"
	else
		echo "duo-confidential installed (no systemctl here: not enabled). Next:"
	fi
	echo "  edit /etc/duo-confidential/config.yaml (see /usr/share/doc/duo-confidential/README.md)"
	echo "  duo-confidential doctor --offline"
	echo "  systemctl start duo-confidential"
}

upgrade() {
	ensure_user
	ensure_dirs
	if systemd_running; then
		systemctl daemon-reload || true
		systemctl try-restart "${unit}" || true
	fi
}

case "$1" in
configure)
	# $2 is the previously configured version, empty on a first install.
	if [ -z "${2:-}" ]; then
		first_install
	else
		upgrade
	fi
	;;
1)
	first_install
	;;
2)
	upgrade
	;;
abort-upgrade | abort-remove | abort-deconfigure)
	;;
*)
	echo "postinst called with unknown argument '$1'" >&2
	exit 1
	;;
esac
exit 0
