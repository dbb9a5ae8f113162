# peercdn: `make run` starts the demo tracker, `make test` runs the whole suite.
# Both install what a fresh Debian machine lacks.

GO       ?= go
BIN      := bin/peercdn
FUZZTIME ?= 10s
# Fuzz targets as package:Target; each runs for FUZZTIME in `make test`.
FUZZ     := ./signaling:FuzzDecode ./tracker:FuzzVerifyToken ./peerwire:FuzzDecode ./hashfile:FuzzDecode ./hashfile:FuzzSidxRanges ./signaling:FuzzParseRange ./tracker:FuzzWebTorrentMessage ./tracker/wsconn:FuzzReadMessage ./tracker/wsconn:FuzzReadMessageRoundTrip ./tracker/wtwire:FuzzDecode ./tracker/stunserver:FuzzAnswer ./tracker:FuzzCDNDigest
# Debian packages the tests need: redis-server (cluster tests), iproute2 and nftables (the NAT lab,
# internal/netlab), prometheus (the alert rules and dashboard queries against a real one).
APT_PKGS := redis-server iproute2 nftables prometheus

export GOFLAGS := -mod=mod

.PHONY: all build wasm check-wasm helm-check npm npm-tools vendor run stream swarm e2e test vet unit interop fuzz bench bench-trackers bench-scale bench-lab bench-network bench-field deps clean

all: build

build: wasm
	$(GO) build -o $(BIN) ./cmd/peercdn

# wasm builds the browser agent that the binary embeds and serves. Its
# brotli form and wasm_exec.js are committed, so that `go install` builds a
# complete binary; the build is reproducible (no VCS stamp), and
# check-wasm (in `make test`) fails when the committed agent is stale.
wasm:
	GOOS=js GOARCH=wasm $(GO) build -buildvcs=false -trimpath -ldflags="-s -w" -o web/dist/peercdn.wasm ./wasm
	cp "$$($(GO) env GOROOT)/lib/wasm/wasm_exec.js" web/dist/wasm_exec.js
	$(GO) run ./web/precompress web/dist/peercdn.wasm

# vendor fetches the demo pages' players (hls.js, Shaka, dash.js) from npm.
HLSJS_VERSION ?= 1.7.4
SHAKA_VERSION ?= 5.2.12
DASHJS_VERSION ?= 5.2.1
vendor: web/vendor/hls.min.js web/vendor/shaka-player.compiled.js web/vendor/dash.all.min.js
web/vendor/hls.min.js web/vendor/shaka-player.compiled.js web/vendor/dash.all.min.js:
	@command -v npm >/dev/null || $(MAKE) deps APT_PKGS="nodejs npm"
	mkdir -p web/vendor web/npm-vendor
	cd web/npm-vendor && { [ -f package.json ] || echo "{\"name\":\"peercdn-demo-vendor\",\"private\":true}" > package.json; } && \
		npm install --no-audit --no-fund --loglevel=error hls.js@$(HLSJS_VERSION) shaka-player@$(SHAKA_VERSION) dashjs@$(DASHJS_VERSION)
	cp web/npm-vendor/node_modules/hls.js/dist/hls.min.js web/npm-vendor/node_modules/shaka-player/dist/shaka-player.compiled.js \
		web/npm-vendor/node_modules/dashjs/dist/modern/umd/dash.all.min.js web/vendor/

# run needs Go and npm only (no root, no Redis: the demo is one node in memory).
run: vendor build
	$(BIN) serve --demo

# stream regenerates the sample stream in examples/stream (needs ffmpeg).
stream:
	$(MAKE) deps APT_PKGS=ffmpeg
	examples/make-stream.sh

# swarm runs 10 native viewers for 60 s against a local `make run`.
swarm: build
	$(BIN) swarm --viewers 10 --seconds 60

# bench-trackers measures `peercdn serve` against bittorrent-tracker's
# server (npm, Node) with `peercdn bench tracker`, side by side
# (docs/benchmarks.md). Installed with --ignore-scripts: nothing of it runs
# at install time.
BITTORRENT_TRACKER_VERSION ?= 11.2.3
bench-trackers: build bench/node_modules/bittorrent-tracker
	bench/trackers.sh
# bench-scale measures `peercdn serve` holding 5k, 10k and 19k connections.
bench-scale: build
	bench/scale.sh
# bench-network runs peercdn swarm --network over presets and swarm sizes,
# each beside its CDN-only baseline (bench/out/network-*.json), on the
# field harness's 0.9 Mbit/s stream (made with ffmpeg once).
bench-network: build
	$(MAKE) deps APT_PKGS=ffmpeg
	bench/network.sh
# bench-field runs the field harness: Chromium viewers with peercdn and
# plain hls.js in the same run, live, VOD and a slow CDN (bench/field.sh),
# on a stream shaped as the outside harness's (made with ffmpeg).
bench-field: build vendor
	$(MAKE) deps APT_PKGS="ffmpeg chromium"
	bench/field.sh
# bench-lab runs 22 native viewers in NAT lab households (16 homes, 6
# symmetric NATs), with the built-in STUN, then with its TURN too (root).
bench-lab: deps
	LAB_MIXED=1 $(GO) test -count=1 -timeout 20m -v -run TestNATLabMixed ./cmd/peercdn
	LAB_MIXED=1 LAB_TURN=1 $(GO) test -count=1 -timeout 20m -v -run TestNATLabMixed ./cmd/peercdn
bench/node_modules/bittorrent-tracker:
	@command -v npm >/dev/null || $(MAKE) deps APT_PKGS="nodejs npm"
	cd bench && { [ -f package.json ] || echo '{"name":"peercdn-bench","private":true}' > package.json; } && \
		npm install --ignore-scripts --no-audit --no-fund --loglevel=error bittorrent-tracker@$(BITTORRENT_TRACKER_VERSION)

# deps installs missing Debian packages (root, or sudo when available).
deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { gofmt -l .; echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags e2e ./e2e
	GOOS=js GOARCH=wasm $(GO) vet ./signaling/... ./peerwire/... ./agent/...
	GOOS=js GOARCH=wasm $(GO) build ./signaling/... ./peerwire/... ./agent/...

# One package at a time (-p 1): the agent, sim and cmd/peercdn tests run
# real-time swarms whose figures a starved CPU moves: under -race, with the
# packages side by side on 2 cores, the NAT lab's two lone viewers stalled
# once each in CI (2026-12-06); three runs of it alone, beside the sim
# package's tests, did not. It costs about 3 minutes.
unit:
	$(GO) test -race -count=1 -p 1 ./...

# interop runs clients nobody here wrote against the tracker (module
# interop/), in a network namespace with only loopback: built first,
# since nothing downloads in there.
interop:
	cd interop && $(GO) vet ./... && $(GO) test -c -o ../bin/interop.test .
	unshare -n sh -c 'ip link set lo up && exec bin/interop.test -test.count=1 -test.v'

# Fuzzing runs on Go 1.27 (fetched by the go command from the module
# proxy, once): Go 1.26's fuzz coordinator can fail a target with "context
# deadline exceeded" and no failing input when a worker is busy at the
# -fuzztime deadline (go.dev/issue/75804, fixed in 1.27); it did so in CI
# with FuzzWebTorrentMessage, whose workers spend seconds minimizing.
FUZZ_TOOLCHAIN ?= go1.27.3
fuzz:
	@for t in $(FUZZ); do pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$pkg $$name for $(FUZZTIME)"; \
		GOTOOLCHAIN=$(FUZZ_TOOLCHAIN) $(GO) test -run='^$$' -fuzz="^$$name\$$" -fuzztime=$(FUZZTIME) $$pkg || exit 1; done

# npm builds the npm package (web/npm/dist) from the script tag's source;
# nothing is published from here. Its version names the commit.
NPM_VERSION ?= 0.0.0-$(shell git rev-parse --short=12 HEAD 2>/dev/null || echo dev)
npm: wasm
	$(GO) run ./web/npmpkg -out web/npm/dist -version $(NPM_VERSION)

# npm-tools: a bundler and TypeScript for the test that builds an app
# with the package (e2e TestBundledApp).
ESBUILD_VERSION    ?= 0.28.2
TYPESCRIPT_VERSION ?= 5.9.3
npm-tools: vendor
	@test -x web/npm-vendor/node_modules/.bin/esbuild -a -x web/npm-vendor/node_modules/.bin/tsc || \
		(cd web/npm-vendor && npm install --no-audit --no-fund --loglevel=error esbuild@$(ESBUILD_VERSION) typescript@$(TYPESCRIPT_VERSION))

# e2e plays the demo in headless Chromium (Debian's chromium package).
e2e: build vendor npm npm-tools
	$(MAKE) deps APT_PKGS=chromium
	$(GO) test -tags e2e -count=1 -timeout 45m -v ./e2e

# check-wasm: the committed agent (web/dist) is what its source builds.
check-wasm: wasm
	@if git rev-parse --git-dir >/dev/null 2>&1 && ! git diff --quiet -- web/dist; then \
		git diff --stat -- web/dist; \
		echo "web/dist is stale: commit what 'make wasm' built (the agent go install embeds)"; exit 1; fi

# helm-check renders the Helm chart (deploy/helm/peercdn) with Helm's own
# engine and decodes every object strictly (module deploy/helm/chartcheck,
# kept apart so Helm stays out of the binary's module graph); the binary
# checks the variable names the chart sets.
helm-check: build
	cd deploy/helm/chartcheck && $(GO) vet ./... && PEERCDN_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 ./...

test: deps vet check-wasm unit helm-check interop fuzz e2e

bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./...

clean:
	rm -rf bin
