#!/usr/bin/env bash
# Shows plugwire talking to go-plugin v1.8.0 in both directions, with go-plugin's own example
# programs. Run by `make demo` after the binaries are built.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rust=$root/target/release
go=$root/target/go-fixtures
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

step() { printf '\n\033[1m%s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

step "1. Rust host (plugwire kv-host) + Go plugin (go-plugin's examples/grpc/plugin-go-grpc)"
export KV_PLUGIN=$go/kv-go-plugin KV_PROTO=grpc
show "$rust/kv-host" put greeting "hello from a Rust host"
show "$rust/kv-host" get greeting

step "2. Go host (go-plugin's examples/grpc) + Rust plugin (plugwire kv-plugin)"
export KV_PLUGIN=$rust/kv-plugin KV_PROTO=grpc
show "$go/kv-go-host" put greeting "hello from a Go host" 2>/dev/null
show "$go/kv-go-host" get greeting 2>/dev/null

step "3. Bidirectional (the broker): plugwire counter-host + go-plugin's examples/bidirectional plugin"
export COUNTER_PLUGIN=$go/counter-go-plugin
show "$rust/counter-host" put visits 2
show "$rust/counter-host" --mux --auto-mtls put visits 3
show "$rust/counter-host" get visits

step "4. go-plugin's examples/bidirectional host + plugwire counter-plugin, on the same data"
export COUNTER_PLUGIN=$rust/counter-plugin
show "$go/counter-go-host" put visits 10 2>/dev/null
show "$go/counter-go-host" get visits 2>/dev/null

# The basic greeter hosts log at debug level on stdout (go-plugin's example sets its logger up so):
# only the greeting is shown.
greeting() { show "$@" | grep -Ev '^[0-9]{4}-[0-9]{2}-[0-9]{2}T'; }
mkdir -p plugin

step "5. net/rpc, go-plugin's examples/basic: plugwire greeter-host + the Go ./plugin/greeter, then the reverse"
ln -sf "$go/greeter-go-plugin" plugin/greeter
greeting "$rust/greeter-host"
ln -sf "$rust/greeter-plugin" plugin/greeter
greeting "$go/greeter-go-host"

step "6. net/rpc KV (KV_PROTO=netrpc): plugwire kv-host with plugin-go-netrpc, go-plugin's host with plugwire kv-plugin-netrpc"
export KV_PROTO=netrpc KV_PLUGIN=$go/kv-go-plugin-netrpc
show "$rust/kv-host" put rpc "hello over net/rpc"
export KV_PLUGIN=$rust/kv-plugin-netrpc
show "$go/kv-go-host" get rpc 2>/dev/null
show "$go/kv-go-host" put rpc "hello from a Go host over net/rpc" 2>/dev/null
export KV_PLUGIN=$go/kv-go-plugin-netrpc
show "$rust/kv-host" get rpc

step "7. go-plugin's examples/negotiated: version 3 (gRPC) writes, version 2 (net/rpc) reads, ./kv-plugin"
ln -sf "$go/negotiated-go-plugin" kv-plugin
show env KV_PROTO=grpc "$rust/negotiated-host" put negotiated "hello, negotiated"
ln -sf "$rust/negotiated-plugin" kv-plugin
show env KV_PROTO=netrpc "$go/negotiated-go-host" get negotiated 2>/dev/null

step "8. go-plugin's examples/streaming (gRPC streams, 1000-byte messages), ./plugin/streamer: what each host read back"
ln -sf "$go/streamer-go-plugin" plugin/streamer
show "$rust/streamer-host" stream.txt 2>&1 | grep -E '^\$ |"received [0-9]'
ln -sf "$rust/streamer-plugin" plugin/streamer
show "$go/streamer-go-host" stream.txt 2>&1 | grep -E '^\$ |"received [0-9]'

step "The plugins kept their data in kv_<key> files in $work:"
for f in "$work"/kv_*; do printf '%s: %s\n' "$(basename "$f")" "$(head -c 60 "$f" | tr '\n' ' ')"; done
