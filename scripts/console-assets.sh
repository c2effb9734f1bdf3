#!/usr/bin/env bash
# Rebuilds the console's vendored chart library (make console-assets): uPlot
# at a pinned version from the npm registry, its tarball checked against the
# pinned sha512 integrity the registry publishes (npm view uplot@VERSION
# dist.integrity), then its built files and licence copied into
# cmd/edge/console/static/vendor/uplot/. The files are committed: the
# console is embedded in the edge binary and loads nothing from elsewhere,
# so building the edge needs neither npm nor the network. SHA256SUMS there
# pins the copied files; cmd/edge/console's tests check them against it.
set -euo pipefail

VERSION=1.6.32
INTEGRITY=sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw==
FILES=(dist/uPlot.iife.min.js dist/uPlot.min.css LICENSE)

root=$(cd "$(dirname "$0")/.." && pwd)
dest=$root/cmd/edge/console/static/vendor/uplot
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cd "$tmp"
tgz=$(npm pack --silent "uplot@$VERSION")
got=sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)
if [ "$got" != "$INTEGRITY" ]; then
	echo "console-assets: $tgz: integrity $got, want $INTEGRITY" >&2
	exit 1
fi
tar -xzf "$tgz"
mkdir -p "$dest"
for f in "${FILES[@]}"; do
	cp "package/$f" "$dest/$(basename "$f")"
done
cd "$dest"
sha256sum $(for f in "${FILES[@]}"; do basename "$f"; done) >SHA256SUMS
echo "console-assets: uPlot $VERSION into ${dest#"$root"/}"
