#!/bin/sh
# onramp package: after install or upgrade (deb: postinst configure; rpm:
# %post, $1 = 1 or 2). Creates the onramp system user and group and the
# edge's state directory /var/lib/onramp-edge owned by them, then has a
# running systemd re-read the units. It enables and starts nothing.
#
# Installed into another root (dpkg --root with
# --force-script-chrootless), DPKG_ROOT names that root, and every tool
# below works inside it.
set -e

case "$1" in
abort-*) exit 0 ;;
esac

root="${DPKG_ROOT:-}"

# has DB: whether the user or group onramp exists in the root's passwd or
# group database.
has() {
	if [ -z "$root" ]; then
		getent "$1" onramp >/dev/null
	else
		grep -q '^onramp:' "$root/etc/$1" 2>/dev/null
	fi
}

if command -v systemd-sysusers >/dev/null 2>&1; then
	systemd-sysusers --root="${root:-/}" onramp.conf # /usr/lib/sysusers.d/ in the root
else
	has group || groupadd --system ${root:+--root "$root"} onramp
	has passwd || useradd --system ${root:+--root "$root"} --gid onramp \
		--home-dir /var/lib/onramp-edge --no-create-home \
		--shell /usr/sbin/nologin --comment "onramp edge" onramp
fi

if command -v systemd-tmpfiles >/dev/null 2>&1; then
	systemd-tmpfiles --create --root="${root:-/}" onramp.conf # /usr/lib/tmpfiles.d/ in the root
else
	install -d -m 0700 "$root/var/lib/onramp-edge"
	if [ -z "$root" ]; then
		chown onramp:onramp /var/lib/onramp-edge
	else
		# The root's ids, not this system's.
		chown "$(awk -F: '$1 == "onramp" { print $3 }' "$root/etc/passwd"):$(awk -F: '$1 == "onramp" { print $3 }' "$root/etc/group")" \
			"$root/var/lib/onramp-edge"
	fi
fi

# Only where systemd is the running init (sd_booted(3)), and not for
# another root.
if [ -z "$root" ] && [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
