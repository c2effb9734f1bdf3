# onramp — the project's interface. `make help` lists the targets.

GO       ?= go
FUZZTIME ?= 30s
BIN      := bin

# Packages with binaries, built into ./bin (cmd/internal holds their shared
# code, not a binary).
CMDS := $(filter-out cmd/internal,$(wildcard cmd/*)) testnet/cmd/testnet

.DEFAULT_GOAL := help
.PHONY: help build package test deps bench bench-smoke profile fuzz demo generate check-generated lint clean console-assets

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# -X flags stamping the version (git describe), commit and build date into
# the binaries' --version (cmd/internal/cli).
LDFLAGS = $(shell packaging/package.sh ldflags)

build: ## build the binaries into ./bin
	@mkdir -p $(BIN)
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ $(addprefix ./,$(CMDS))

package: ## build the .deb and .rpm (amd64, arm64) into dist/ with nfpm: binaries, units, /etc/onramp examples, man pages, completions (ARCHS=amd64 PACKAGERS=deb: fewer)
	@GO=$(GO) packaging/package.sh

deps: ## install the Debian packages the tests and benchmarks need (idempotent)
	@scripts/deps.sh

test: deps build lint check-generated ## build, lint, check the generated eBPF objects, unit and end-to-end tests with -race (root for the netns tests), then the bench smoke run
	$(GO) test -race -count=1 -timeout 30m ./...
	$(MAKE) bench-smoke

bench-smoke: ## make bench QUICK=1 into a temporary directory (proves the harness; leaves BENCHMARKS.md alone)
	@scripts/bench-deps.sh
	@d=$$(mktemp -d); trap 'rm -rf "$$d"' EXIT; \
	$(GO) run ./bench/cmd/bench -quick -out "$$d/results" -md "$$d/BENCHMARKS.md" -charts "$$d/charts"

bench: ## run every benchmark scenario, write BENCHMARKS.md (QUICK=1: smoke run; ONLY=regexp: subset)
	@scripts/bench-deps.sh
	$(GO) run ./bench/cmd/bench $(if $(filter 1 true yes,$(QUICK)),-quick) $(if $(ONLY),-only '$(ONLY)')

profile: ## profile bench scenarios (ONLY=regexp, QUICK=1) into DIR (default profile/): perf call graphs and Go heap/goroutine profiles, a .txt summary per scenario
	@BENCH_PROFILE=1 scripts/bench-deps.sh
	$(GO) run ./bench/cmd/bench -profile '$(or $(DIR),profile)' $(if $(filter 1 true yes,$(QUICK)),-quick) $(if $(ONLY),-only '$(ONLY)')

.PHONY: bench-compare
bench-compare: ## compare two bench results: OLD=a.json NEW=b.json (noise ranges, benchstat)
	@test -n "$(OLD)" -a -n "$(NEW)" || { echo "usage: make bench-compare OLD=bench/results/a.json NEW=bench/results/b.json" >&2; exit 2; }
	$(GO) run ./bench/cmd/bench compare '$(OLD)' '$(NEW)'

.PHONY: console-screenshot
console-screenshot: ## run the console's browser test (root, chromium: make deps), its screenshots into testnet/screenshots/, and copy the overview's to docs/console.png (the README's)
	ONRAMP_SCREENSHOTS=$(CURDIR)/testnet/screenshots $(GO) test -count=1 -run '^TestConsoleBrowser$$' ./testnet/
	cp testnet/screenshots/overview.png docs/console.png
	@echo "docs/console.png: $$(wc -c <docs/console.png) bytes"

fuzz: ## run every fuzz target for FUZZTIME (default 30s)
	@FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

demo: deps ## bring up a local testnet with edge, connector and a private service; traffic through the tunnel
	$(GO) run ./testnet/cmd/testnet demo $(if $(V),-v)

generate: deps ## regenerate generated code, eBPF objects (bpf2go, clang-19) and seed corpora (go generate)
	$(GO) generate ./...

check-generated: deps ## fail if the committed eBPF objects are not what their C compiles to
	@PATH="$$(dirname "$$(command -v $(GO))"):$$PATH" scripts/check-generated.sh

console-assets: ## rebuild the console's vendored chart library (uPlot, pinned, integrity-checked, from npm) into cmd/edge/console/static/vendor/
	@scripts/console-assets.sh

lint: ## gofmt clean, go vet, staticcheck
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt: not formatted:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

clean: ## remove ./bin, ./dist and test caches
	rm -rf $(BIN) dist
	$(GO) clean -testcache
