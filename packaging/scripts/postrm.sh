#!/bin/sh
# duo-confidential postrm (deb) / %postun (rpm).
#
# remove (deb) / erase (rpm): reload systemd; keep the state directory (keys,
# local CA, trust log) and the service user, so a reinstall carries on.
# purge (deb only): delete the enablement links, the state directory and
# the service user and group, and /etc/duo-confidential if nothing the admin added is left in it.
# rpm has no purge: erase keeps the state; remove it by hand
# (docs/operations.md, "Install, upgrade and remove").
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

case "$1" in
remove | 0)
	if systemd_running; then
		systemctl daemon-reload || true
	fi
	;;
purge)
	# The unit file is gone by now, so `systemctl disable` would refuse:
	# delete the enablement links themselves.
	find /etc/systemd/system -name "${unit}" -type l -exec rm -f {} + 2>/dev/null || true
	rm -rf "${statedir}"
	rmdir "${confdir}" 2>/dev/null || true
	if getent passwd "${user}" >/dev/null 2>&1; then
		userdel "${user}" || true
	fi
	if getent group "${user}" >/dev/null 2>&1; then
		groupdel "${user}" || true
	fi
	;;
esac
exit 0
