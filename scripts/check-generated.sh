#!/usr/bin/env bash
# Regenerates the eBPF objects (bpf2go, from the C next to them) and fails
# if they differ from the ones in the tree: the committed objects are what
# the binaries embed, so they must be what the C compiles to.
set -euo pipefail

# Every package whose gen.go runs bpf2go.
mapfile -t dirs < <(grep -l 'bpf2go' $(git ls-files '*gen.go') | xargs -n1 dirname | sort -u)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for d in "${dirs[@]}"; do
	mkdir -p "$tmp/$d"
	cp "$d"/*_bpfel.go "$d"/*_bpfel.o "$tmp/$d/"
	go generate "./$d"
	for f in "$tmp/$d"/*; do
		if ! cmp -s "$f" "$d/$(basename "$f")"; then
			echo "check-generated: $d/$(basename "$f") is not what $d's C compiles to: run make generate and commit the result" >&2
			cp "$tmp/$d"/* "$d/" # leave the tree as it was
			exit 1
		fi
	done
done
echo "check-generated: the eBPF objects match their C (${dirs[*]})"
