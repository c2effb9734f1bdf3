#!/usr/bin/env bash
# Builds onramp's .deb and .rpm packages with nfpm (go tool nfpm; its
# configuration is packaging/nfpm.yaml).
#
#   packaging/package.sh                      the packages, into dist/ (make package)
#   packaging/package.sh ldflags              the go build -ldflags that stamp version, commit and date (make build)
#   packaging/package.sh version [DESCRIBE [COUNT]]
#                                             the package version for git describe's output
#
# Environment: ARCHS (default "amd64 arm64"), PACKAGERS (default "deb rpm"),
# DIST (default dist), GO (default go), ONRAMP_MAINTAINER, and
# SOURCE_DATE_EPOCH for the build date (default: now).
#
# For each architecture it cross-compiles onramp-edge and onramp-connector
# (CGO_ENABLED=0, so they run on any glibc or musl system; stripped),
# writes the man pages and shell completions with the binaries' own cobra
# commands (built for this machine with -tags gendocs), and the example
# edge.yml: the lines in packaging/examples/edge.yml.in and the documented
# example of cmd/edge/edgeconfig, commented out. Everything it builds is
# under $DIST/build.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
cli=github.com/onramp-net/onramp/cmd/internal/cli

describe() { git describe --tags --always --dirty 2>/dev/null; }

# ldflags prints the -X flags of cmd/internal/cli's version, commit and
# date; nothing outside a git checkout (the binaries then say what the Go
# toolchain recorded).
ldflags() {
	local rev date
	rev=$(git rev-parse HEAD 2>/dev/null) || return 0
	if [[ -n ${SOURCE_DATE_EPOCH:-} ]]; then
		date=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
	else
		date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
	fi
	echo "-X $cli.version=$(describe) -X $cli.commit=$rev -X $cli.date=$date"
}

# pkgversion DESCRIBE [COUNT] prints a version that dpkg and rpm accept and
# order as git does, made of git describe's output DESCRIBE:
#   v1.2.0                      1.2.0
#   v1.2.0-rc1                  1.2.0~rc1         (~: before 1.2.0)
#   v1.2.0-4-g2c13399           1.2.0+git4.2c13399 (4 commits after the tag)
#   v1.2.0-dirty                1.2.0+dirty
#   2c13399 (no tag)            0.0.0+gitCOUNT.2c13399, COUNT the commits in HEAD
pkgversion() {
	local d=$1 tag ahead="" dirty=""
	if [[ $d == *-dirty ]]; then
		dirty=dirty
		d=${d%-dirty}
	fi
	# No tag: git describe --always says the abbreviated commit (7 or more
	# hex digits).
	if [[ $d =~ ^[0-9a-f]{7,40}$ ]]; then
		tag=0.0.0 ahead=+git${2:-$(git rev-list --count HEAD)}.$d
	elif [[ $d =~ ^v?([0-9].*)-([0-9]+)-g([0-9a-f]+)$ ]]; then
		tag=${BASH_REMATCH[1]} ahead=+git${BASH_REMATCH[2]}.${BASH_REMATCH[3]}
	elif [[ $d =~ ^v?([0-9].*)$ ]]; then
		tag=${BASH_REMATCH[1]}
	else
		echo "package.sh: git describe said \"$1\": no version to make of it" >&2
		return 1
	fi
	tag=${tag//-/\~}
	if [[ -n $dirty ]]; then
		if [[ -n $ahead ]]; then ahead+=.$dirty; else ahead=+$dirty; fi
	fi
	local v=$tag$ahead
	if [[ ! $v =~ ^[0-9][A-Za-z0-9.+~]*$ ]]; then
		echo "package.sh: git describe said \"$1\": \"$v\" is not a package version (digits, letters, . + ~)" >&2
		return 1
	fi
	echo "$v"
}

# edgeyml prints the example /etc/onramp/edge.yml.
edgeyml() {
	cat packaging/examples/edge.yml.in
	echo "# The documented example (every key; the defaults are in the comments):"
	echo "#"
	# The example is the tab-indented block of the package comment.
	awk '/^package /{exit} /^\/\/\t/{sub(/^\/\/\t/, "# "); print}' cmd/edge/edgeconfig/edgeconfig.go
}

build() {
	local dist=${DIST:-dist} archs=${ARCHS:-amd64 arm64} packagers=${PACKAGERS:-deb rpm}
	local version flags work arch p
	version=$(pkgversion "$(describe)")
	flags=$(ldflags)
	work=$dist/build
	rm -rf "$work"
	mkdir -p "$work"

	for arch in $archs; do
		echo "package.sh: onramp-edge and onramp-connector for linux/$arch"
		mkdir -p "$work/$arch"
		# -s -w: no symbol table or DWARF (a third of the size); a panic's
		# stack trace still names the functions and lines.
		CGO_ENABLED=0 GOOS=linux GOARCH=$arch "$GO" build -trimpath -ldflags "-s -w $flags" -o "$work/$arch/" ./cmd/edge ./cmd/connector
		mv "$work/$arch/edge" "$work/$arch/onramp-edge"
		mv "$work/$arch/connector" "$work/$arch/onramp-connector"
	done

	echo "package.sh: man pages and completions"
	for p in edge connector; do
		"$GO" run -tags gendocs -ldflags "$flags" "./cmd/$p" gendocs --man "$work/man" --completions "$work/completions"
	done
	edgeyml >"$work/edge.yml"

	for arch in $archs; do
		for p in $packagers; do
			ONRAMP_VERSION=$version ONRAMP_ARCH=$arch ONRAMP_BUILD=$work \
				ONRAMP_MAINTAINER=${ONRAMP_MAINTAINER:-onramp maintainers <maintainers@onramp-net.invalid>} \
				"$GO" tool nfpm package --config packaging/nfpm.yaml --packager "$p" --target "$dist/"
		done
	done
}

case "${1:-}" in
"") build ;;
ldflags) ldflags ;;
version) pkgversion "${2:-$(describe)}" ${3:+"$3"} ;;
*)
	echo "usage: packaging/package.sh [ldflags | version [DESCRIBE [COUNT]]]" >&2
	exit 2
	;;
esac
