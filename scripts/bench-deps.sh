#!/usr/bin/env bash
# Installs the peers the benchmark harness (make bench) measures onramp
# against: haproxy and socat as TCP proxies, iperf3 as the load generator,
# plus what the netns testbed needs (iproute2 for ip and tc, util-linux for
# taskset), curl; linux-perf for make profile. Idempotent and quick when everything is present: apt-get runs
# only for what is missing. wireguard-go (L3 peer) comes with issue 6.
set -euo pipefail

packages=(
	iproute2
	util-linux
	iperf3
	haproxy
	socat
	curl
)
# make profile also needs perf.
if [[ ${BENCH_PROFILE:-} == 1 ]]; then
	packages+=(linux-perf)
fi

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
	echo "bench-deps: all present (${packages[*]})"
	exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
	echo "bench-deps: missing ${missing[*]}; run make bench as root (or apt-get install them)" >&2
	exit 1
fi
echo "bench-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The Debian package enables and starts a system-wide haproxy; the harness
# runs its own instances inside namespaces and needs none.
if [[ " ${missing[*]} " == *" haproxy "* ]] && command -v systemctl >/dev/null 2>&1; then
	systemctl disable --now haproxy >/dev/null 2>&1 || true
fi
echo "bench-deps: installed ${missing[*]}"
