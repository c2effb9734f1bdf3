#!/bin/sh
# onramp package: before removal (deb: prerm remove; rpm: %preun, $1 = 0
# on removal, 1 on upgrade). Stops the edge and the connectors so that no
# service runs a deleted binary; an upgrade leaves them running (restart
# them to run the new version).
set -e

case "$1" in
remove | 0) ;;
*) exit 0 ;;
esac

if [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then
	systemctl stop onramp-edge.service 'onramp-connector@*.service' || true
fi
