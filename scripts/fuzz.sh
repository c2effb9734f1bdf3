#!/usr/bin/env bash
# Runs every fuzz target in the module, one after another, each for FUZZTIME
# (default 30s). Findings are written by go test into the package's
# testdata/fuzz/FuzzX/ directory; the script stops at the first failure.
set -euo pipefail
FUZZTIME=${FUZZTIME:-30s}
PARALLEL=${FUZZPARALLEL:-$(nproc)}

targets=()
for pkg in $(go list ./...); do
	for t in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		targets+=("$pkg $t")
	done
done
if ((${#targets[@]} == 0)); then
	echo "fuzz: no fuzz targets found" >&2
	exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${FUZZTIME} each"
i=0
for entry in "${targets[@]}"; do
	i=$((i + 1))
	read -r pkg t <<<"$entry"
	echo "fuzz: [$i/${#targets[@]}] $pkg $t"
	go test "$pkg" -run '^$' -fuzz "^${t}\$" -fuzztime "$FUZZTIME" -parallel "$PARALLEL"
done
echo "fuzz: all ${#targets[@]} targets ran ${FUZZTIME} without a finding"
