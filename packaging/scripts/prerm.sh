#!/bin/sh
# duo-confidential prerm (deb) / %preun (rpm): on removal (not upgrade), stop
# the service (it drains in-flight requests, up to TimeoutStopSec) and
# disable it, for deb and rpm alike (as Fedora's %systemd_preun does): a
# removed program must not be started at boot. A reinstall enables it again
# (postinst); postrm purge also deletes any enablement links left.
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

case "$1" in
remove | 0)
	if systemd_running; then
		systemctl stop "${unit}" || true
	fi
	if have_systemctl; then
		systemctl --no-reload disable "${unit}" >/dev/null 2>&1 || true
	fi
	;;
esac
exit 0
