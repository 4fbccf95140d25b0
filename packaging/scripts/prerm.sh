#!/bin/sh
# duo-confidential prerm (deb) / %preun (rpm): on removal (not upgrade), stop
# the service (it drains in-flight requests, up to TimeoutStopSec) and
# disable it.
set -e
@COMMON@

case "$1" in
remove | 0)
	if systemd_running; then
		systemctl stop "${service}" || true
	fi
	if have_systemctl; then
		systemctl --no-reload disable "${service}" >/dev/null 2>&1 || true
	fi
	;;
esac
exit 0
