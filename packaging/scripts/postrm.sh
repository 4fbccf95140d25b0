#!/bin/sh
# duo-confidential postrm (deb) / %postun (rpm).
#
# remove (deb) / erase (rpm): reload systemd; keep the state directory (keys,
# local CA, trust log) and the service user, so a reinstall carries on.
# purge (deb only): delete the state directory and the service user and
# group, and /etc/duo-confidential if nothing the admin added is left in it.
# rpm has no purge: erase keeps the state; remove it by hand
# (docs/operations.md, "Install, upgrade and remove").
set -e
@COMMON@

case "$1" in
remove | 0)
	if systemd_running; then
		systemctl daemon-reload || true
	fi
	;;
purge)
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
