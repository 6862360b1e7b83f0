# plugwire: the human entry points. `make demo` and `make test` work on a fresh machine with Rust
# and Go; everything else they need comes from crates.io and the Go module proxy.

SHELL := /bin/bash
CARGO ?= cargo
GO ?= go

# go-fixtures/go.mod decides the Go version; an older local Go fetches the right one.
export GOTOOLCHAIN ?= auto
export GOFLAGS ?= -mod=readonly

GO_FIXTURES := $(CURDIR)/target/go-fixtures
export PLUGWIRE_GO_FIXTURES := $(GO_FIXTURES)

GO_PLUGIN := github.com/hashicorp/go-plugin

# The fixtures link both go-plugin examples' protos, which share the file name proto/kv.proto and
# package `proto`; gRPC marshals through the Go types, so the registry conflict is harmless.
FIXTURE_LDFLAGS := -ldflags=-X=google.golang.org/protobuf/reflect/protoregistry.conflictPolicy=ignore

.PHONY: all build cli go-fixtures demo test check fmt-check clippy doc package package-check codegen codegen-check bench bench-smoke fuzz clean

all: build

## build: the example programs (kv-host, kv-plugin, ...) into target/release/
build:
	$(CARGO) build --release -p plugwire-examples

## cli: the plugwire command (inspect, call, reattach, check) into target/release/
cli:
	$(CARGO) build --release -p plugwire-cli

## go-fixtures: the Go fixture host and plugin, and go-plugin v1.8.0's own examples, from source
go-fixtures:
	@command -v $(GO) >/dev/null || { echo "Go is required to build the Go fixtures (https://go.dev/dl/)"; exit 1; }
	cd go-fixtures && $(GO) build $(FIXTURE_LDFLAGS) -o $(GO_FIXTURES)/fixture-host ./cmd/fixture-host
	cd go-fixtures && $(GO) build $(FIXTURE_LDFLAGS) -o $(GO_FIXTURES)/fixture-plugin ./cmd/fixture-plugin
	# The same fixtures with a current grpc-go, which (unlike the 1.61 go-plugin v1.8.0 pins)
	# insists on ALPN h2 over TLS.
	cd go-fixtures && $(GO) build $(FIXTURE_LDFLAGS) -modfile=grpc-current.mod -o $(GO_FIXTURES)/fixture-host-grpc-current ./cmd/fixture-host
	cd go-fixtures && $(GO) build $(FIXTURE_LDFLAGS) -modfile=grpc-current.mod -o $(GO_FIXTURES)/fixture-plugin-grpc-current ./cmd/fixture-plugin
	cd go-fixtures && $(GO) build -o $(GO_FIXTURES)/kv-go-host $(GO_PLUGIN)/examples/grpc
	cd go-fixtures && $(GO) build -o $(GO_FIXTURES)/kv-go-plugin $(GO_PLUGIN)/examples/grpc/plugin-go-grpc
	cd go-fixtures && $(GO) build -o $(GO_FIXTURES)/counter-go-host $(GO_PLUGIN)/examples/bidirectional
	cd go-fixtures && $(GO) build -o $(GO_FIXTURES)/counter-go-plugin $(GO_PLUGIN)/examples/bidirectional/plugin-go-grpc
	cd go-fixtures && $(GO) build -o $(GO_FIXTURES)/greeter-go-plugin $(GO_PLUGIN)/examples/basic/plugin
	cd go-fixtures && $(GO) build -o $(GO_FIXTURES)/greeter-go-host $(GO_PLUGIN)/examples/basic
	cd go-fixtures && $(GO) build -o $(GO_FIXTURES)/kv-go-plugin-netrpc $(GO_PLUGIN)/examples/grpc/plugin-go-netrpc
	cd go-fixtures && $(GO) build -o $(GO_FIXTURES)/negotiated-go-host $(GO_PLUGIN)/examples/negotiated
	cd go-fixtures && $(GO) build -o $(GO_FIXTURES)/negotiated-go-plugin $(GO_PLUGIN)/examples/negotiated/plugin-go
	cd go-fixtures && $(GO) build -o $(GO_FIXTURES)/streamer-go-host $(GO_PLUGIN)/examples/streaming
	cd go-fixtures && $(GO) build -o $(GO_FIXTURES)/streamer-go-plugin $(GO_PLUGIN)/examples/streaming/plugin
	# A go-plugin peer without go-plugin (as its Python example): plugins that do not stop.
	cd go-fixtures && $(GO) build -o $(GO_FIXTURES)/bare-plugin ./cmd/bare-plugin
	# hashicorp/yamux v0.1.2 (go-plugin's) as a peer for plugwire's yamux.
	cd go-fixtures && $(GO) build -o $(GO_FIXTURES)/yamux-peer ./cmd/yamux-peer
	# For the benchmark: the spawn floor (a static binary) and a stripped plugin for size.
	cd go-fixtures && CGO_ENABLED=0 $(GO) build -o $(GO_FIXTURES)/noop ./cmd/noop
	cd go-fixtures && $(GO) build -ldflags="-s -w" -o $(GO_FIXTURES)/kv-go-plugin-stripped $(GO_PLUGIN)/examples/grpc/plugin-go-grpc

## demo: a Rust host with a Go plugin, and a Go host with a Rust plugin; the plugwire command
demo: build cli go-fixtures
	@scripts/demo.sh
	@printf '\n\033[1m%s\033[0m\n' "The plugwire command on go-plugin's examples/grpc plugin"
	@echo '$$ plugwire inspect --cookie BASIC_PLUGIN=hello -- kv-go-plugin'
	@target/release/plugwire inspect --cookie BASIC_PLUGIN=hello -- $(GO_FIXTURES)/kv-go-plugin
	@echo; echo '$$ plugwire check --cookie BASIC_PLUGIN=hello -- kv-go-plugin'
	@target/release/plugwire check --cookie BASIC_PLUGIN=hello -- $(GO_FIXTURES)/kv-go-plugin

## test: everything CI runs: formatting, lints, codegen freshness, unit tests, the interop matrix
# Interop cells mostly wait on child processes (and some on go-plugin's 5 s timeouts), so they
# run with more threads than the CI machine has cores.
# The example cells use debug builds of the examples (they share the test build's dependencies).
test: export PLUGWIRE_REQUIRE_GO := 1
# go-fixtures comes first: with PLUGWIRE_REQUIRE_GO=1 the interop crate's build script (run by
# clippy and doc too) refuses to build without them.
.NOTPARALLEL: test
test: go-fixtures fmt-check clippy doc codegen-check package-check
	$(CARGO) build -p plugwire-examples -p plugwire-interop -p plugwire-cli -p plugwire-cli-fixtures
	PLUGWIRE_EXAMPLES_DIR=$(CURDIR)/target/debug $(CARGO) test --workspace --all-targets -- --test-threads=6
	$(CARGO) test --workspace --doc
	$(MAKE) bench-smoke

## bench: performance.md's scenarios, four pairings interleaved, into target/bench/ (QUICK=1: < 3 min)
bench: go-fixtures
	$(CARGO) build --release -p plugwire-interop -p plugwire-examples -p plugwire-bench
	target/release/plugwire-bench $(if $(QUICK),--quick) --out target/bench

# The benchmark driver on debug builds with tiny workloads: keeps it working; asserts no timing.
bench-smoke:
	$(CARGO) run -q -p plugwire-bench -- --smoke --bin-dir target/debug --out target/bench-smoke > /dev/null

fmt-check:
	$(CARGO) fmt --all --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## doc: the API documentation, with warnings (broken links, bad HTML) denied
doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps

PUBLISHED_CRATES := -p plugwire-protocol -p plugwire-runtime -p plugwire-host -p plugwire-plugin -p plugwire-cli

## package: package and verify the published crates (the libraries and the command) as crates.io would build them
package:
	$(CARGO) package --allow-dirty $(PUBLISHED_CRATES)

# Quick: each published crate's package holds its README and licence files.
package-check:
	@for c in $(subst -p ,,$(PUBLISHED_CRATES)); do \
		files=$$($(CARGO) package --list --allow-dirty -p $$c 2>/dev/null) || { echo "cargo package --list failed for $$c"; exit 1; }; \
		for f in README.md LICENSE-MIT LICENSE-APACHE; do \
			echo "$$files" | grep -qx "$$f" || { echo "$$c: $$f is not packaged"; exit 1; }; \
		done; \
	done

## codegen: regenerate the checked-in protobuf/gRPC code (no protoc needed)
codegen:
	$(CARGO) run -q -p plugwire-codegen

codegen-check:
	$(CARGO) run -q -p plugwire-codegen -- --check

## fuzz: each cargo-fuzz target for FUZZ_SECONDS (default 60) from the committed seeds (needs nightly)
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := handshake_line protocol_versions cert_field hclog_line gob_stream netrpc_framing yamux_session
fuzz:
	@$(CARGO) +nightly --version >/dev/null 2>&1 || { echo "make fuzz needs a nightly toolchain: rustup toolchain install nightly"; exit 1; }
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd fuzz && for t in $(FUZZ_TARGETS); do \
		mkdir -p ../target/fuzz-corpus/$$t && \
		$(CARGO) +nightly fuzz run --target-dir ../target/fuzz $$t ../target/fuzz-corpus/$$t corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

clean:
	$(CARGO) clean
