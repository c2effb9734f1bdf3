#!/usr/bin/env bash
# Installs the Debian packages the tests and benchmarks need. Idempotent and
# quick when everything is present: apt-get runs only for what is missing.
set -euo pipefail

# iproute2: ip and tc for the netns testbed; iperf3: throughput in tests and
# benchmarks; iputils-ping: ping across the testbed; curl: a real HTTP
# client in the end-to-end tests; wireguard-tools: wg and wg-quick, which
# configure the stock WireGuard client (wireguard-go) in the L3 tests;
# nftables: nft, the NAT (masquerade) of a router namespace in the L3 test
# of a client behind NAT; conntrack: a NAT that forgets its mappings in
# the test of a connector whose source port changes; clang-19, llvm-19 (llvm-strip) and libbpf-dev
# (bpf_helpers.h) compile the eBPF programs (bpf2go, make generate and the
# check in make test), with the kernel's UAPI headers from linux-libc-dev;
# etcd-server: the etcd binary the tests start as a three-member cluster
# inside the testbed (the edges' shared store; testnet.StartEtcd), and
# etcd-client: etcdctl, to look at such a cluster by hand; nginx: a real
# origin behind the edge's direct L4 proxy (HTTP by Host, TLS by SNI with
# its own certificate, and the PROXY protocol v2 header it reads);
# prometheus: promtool, which checks and unit-tests the alerting rules and
# the dashboard's queries (go test ./packaging/monitoring/). Debian has no
# smaller package with promtool; without recommends it is prometheus alone
# (about 96 MB installed, and a few libjs-* packages for its web UI).
# systemd: systemd-analyze verify on the units, and systemd-sysusers and
# systemd-tmpfiles, which the package's postinstall runs; man-db: man, with
# which systemd-analyze checks the units' Documentation= pages; rpm: rpm
# -qlp, the file list of the .rpm (the packaging test; dpkg makes the .deb's);
# bash-completion: the helpers the packaged bash completion runs on.
# chromium: the headless browser the edge console's browser tests drive
# over the DevTools protocol (chromedp; testnet/console_browser_test.go),
# and fonts-dejavu-core, a font for it to draw the pages' text with
# (chromium-common only recommends fonts-liberation, and this script
# installs no recommends: without a font the screenshots show no text).
#
# etcd-server's postinst would start a system etcd (127.0.0.1:2379, data in
# /var/lib/etcd) where an init system runs, and prometheus's a Prometheus
# server (:9090, scraping itself). The tests never use them (etcd members
# listen inside their own namespaces; promtool needs no server), but nothing
# should run that nobody asked for: a policy-rc.d that denies every start is
# in place while apt-get runs, unless the machine has its own (containers
# often do). prometheus's postinst also enables its unit for the next boot:
# when this script installed it, it disables the unit again.
packages=(
	iproute2
	iperf3
	iputils-ping
	curl
	ca-certificates
	wireguard-tools
	nftables
	conntrack
	clang-19
	llvm-19
	libbpf-dev
	linux-libc-dev
	etcd-server
	etcd-client
	nginx
	prometheus
	systemd
	man-db
	rpm
	bash-completion
	chromium
	fonts-dejavu-core
)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
	echo "deps: all present (${packages[*]})"
	exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
	echo "deps: missing ${missing[*]}; run make deps as root (or apt-get install them)" >&2
	exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
	printf '#!/bin/sh\n# scripts/deps.sh: no service starts while it installs packages\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod 755 /usr/sbin/policy-rc.d
	trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
if [[ " ${missing[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null; then
	systemctl --no-reload disable prometheus.service >/dev/null 2>&1 || true
fi
echo "deps: installed ${missing[*]}"
