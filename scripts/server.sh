#!/usr/bin/env bash
# Builds nimbus and runs `nimbus server` with embedded defaults: state in
# ./nimbus-data, every API on 127.0.0.1:4566. Extra arguments go to `nimbus server`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
build_console
cargo build --release -p nimbus
exec "${CARGO_TARGET_DIR:-target}/release/nimbus" server "$@"
