#!/bin/sh
# duo-confidential preinst (deb) / %pre (rpm): create the service user and
# group before the files are unpacked, so the configuration file gets group
# duo-confidential at once.
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

user=duo-confidential
statedir=/var/lib/duo-confidential

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

case "$1" in
install | upgrade | 1 | 2)
	ensure_user
	;;
esac
exit 0
