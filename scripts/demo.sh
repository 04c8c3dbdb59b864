#!/usr/bin/env bash
# From a fresh Debian machine to a running fletch: installs PostgreSQL if missing, builds
# fletch, then `fletch demo` starts a private PostgreSQL cluster in a temp dir, writes the
# same 1,000,000 sample rows into it and into local Parquet files, serves them on
# http://127.0.0.1:8080 and prints example requests. Ctrl-C stops everything and removes
# the temp dir. Extra arguments go to `fletch demo` (e.g. --rows 100000, --http-listen ...).
set -euo pipefail
FLETCH_LOG_TAG=demo
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$FLETCH_ROOT"

bash scripts/setup.sh pg
command -v cargo >/dev/null || die "cargo not found: install Rust first (https://rustup.rs), then re-run"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/fletch-target}"
log "building fletch (first build of the dependencies takes ~10 minutes on 2 cores) ..."
cargo build --bin fletch
exec "$CARGO_TARGET_DIR/debug/fletch" demo "$@"
