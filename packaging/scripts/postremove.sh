#!/bin/sh
# onramp package: after removal (deb: postrm remove or purge; rpm: %postun,
# $1 = 0 on removal, 1 on upgrade). Has a running systemd forget the
# removed units. The onramp user, /etc/onramp (until a purge) and the
# edge's state in /var/lib/onramp-edge are kept.
set -e

case "$1" in
remove | purge | 0) ;;
*) exit 0 ;;
esac

if [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
