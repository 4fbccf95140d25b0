# Shared by the duo-confidential maintainer scripts; build-packages pastes it
# into each script in place of the "@COMMON@" line, so every script is one
# self-contained POSIX sh file (dpkg and rpm run them without this file).
#
# Argument conventions handled (one set of scripts serves both formats):
#   deb: preinst install|upgrade [old]; postinst configure [old-configured];
#        postinst abort-upgrade|abort-remove|abort-deconfigure;
#        prerm remove|upgrade|deconfigure|failed-upgrade;
#        postrm remove|purge|upgrade|failed-upgrade|abort-install|abort-upgrade|disappear
#   rpm: %pre/%post $1 = 1 (install) or 2 (upgrade);
#        %preun/%postun $1 = 0 (erase) or 1 (upgrade)

service=duo-confidential.service
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
