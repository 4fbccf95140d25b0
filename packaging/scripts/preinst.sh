#!/bin/sh
# duo-confidential preinst (deb) / %pre (rpm): create the service user and
# group before the files are unpacked, so the configuration file gets group
# duo-confidential at once.
set -e
@COMMON@

case "$1" in
install | upgrade | 1 | 2)
	ensure_user
	;;
esac
exit 0
