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

step "Both plugins kept their data in kv_<key> files in $work:"
ls "$work"
