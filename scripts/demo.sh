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
export KV_PLUGIN=$go/kv-go-plugin
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

step "The plugins kept their data in kv_<key> files in $work:"
for f in "$work"/kv_*; do printf '%s: %s\n' "$(basename "$f")" "$(head -c 60 "$f" | tr '\n' ' ')"; done
