#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this script).
#
# Installs what is missing (Debian packages, Java/Maven pieces for MiniDFS, the Python
# client venv), starts a private PostgreSQL and a MiniDFS HDFS, then runs:
#   0. cargo fmt --check    formatting (rustfmt.toml)
#   1. cargo test           Rust unit + integration tests against the real services
#      cargo clippy         --all-targets -D warnings (lints in Cargo.toml)
#   2. go test              the load generator's own tests
#   3. Python client tests  pyarrow.flight, ADBC, Spark over JDBC (tests/python/run.sh)
#      fuzz suite           ~5,000 hostile requests over HTTP, Flight and Flight SQL
#                           (tests/fuzz/run.sh; fixed seed + a fresh one it prints)
#   4. load smoke           every k6 scenario for a few seconds through tools/loadgen
#   5. Kubernetes chart     helm lint --strict + helm template of deploy/helm/fletch, the
#                           rendered fletch.toml checked against config/ (check_chart.py)
# Everything it starts is stopped on exit. Build output is cached outside the clone
# (CARGO_TARGET_DIR, default /var/cache/fletch-target).
set -euo pipefail
FLETCH_LOG_TAG=test
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$FLETCH_ROOT"
fletch_cache_dir

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/fletch-target}"
export CARGO_TERM_COLOR=never
command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs) first"
command -v go >/dev/null || die "go not found: install Go first (needed for tools/loadgen)"

step() { log "==== $* ($(date +%T))"; }

step "setup"
bash scripts/setup.sh all

failed=()

step "cargo fmt --check"
cargo fmt --check || failed+=("cargo fmt --check")

work="$(mktemp -d /tmp/fletch-test.XXXXXX)"
server_pid=""
cleanup() {
    local rc=$?
    [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null || true
    bash scripts/pg.sh destroy "$work/pg" >/dev/null 2>&1 || true
    bash scripts/minidfs.sh stop >/dev/null 2>&1 || true
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT

step "services"
FLETCH_TEST_PG_URL="$(bash scripts/pg.sh start "$work/pg")"
FLETCH_TEST_HDFS_URL="$(bash scripts/minidfs.sh start)"
export FLETCH_TEST_PG_URL FLETCH_TEST_HDFS_URL
log "PostgreSQL: $FLETCH_TEST_PG_URL   HDFS: $FLETCH_TEST_HDFS_URL"

step "cargo test"
cargo build --bins --tests
cargo test --no-fail-fast || failed+=("cargo test")

step "cargo clippy"
cargo clippy --all-targets -- -D warnings || failed+=("cargo clippy")

step "go test (tools/loadgen)"
go -C tools/loadgen test ./... || failed+=("go test")

step "python client tests"
if [[ -f tests/python/run.sh ]]; then
    FLETCH_BIN="$CARGO_TARGET_DIR/debug/fletch" bash tests/python/run.sh || failed+=("python client tests")
else
    failed+=("python client tests (tests/python/run.sh missing)")
fi

step "fuzz suite"
FLETCH_BIN="$CARGO_TARGET_DIR/debug/fletch" bash tests/fuzz/run.sh || failed+=("fuzz suite")

step "load smoke (tools/loadgen --smoke)"
go -C tools/loadgen build -o "$work/loadgen" .
smoke_db="${FLETCH_TEST_PG_URL%/*}/fletch"
"$CARGO_TARGET_DIR/debug/fletch" load --pg-url "$smoke_db" --parquet "file://$work/parquet" \
    --rows 200000 --file-rows 50000 --truncate --quiet
port_file="$work/port"
"$CARGO_TARGET_DIR/debug/fletch" serve --pg-url "$smoke_db" --parquet-url "file://$work/parquet" \
    --http-listen 127.0.0.1:0 --flight-listen "" > "$port_file" 2> "$work/server.log" &
server_pid=$!
for _ in $(seq 1 100); do
    grep -q "listening" "$port_file" 2>/dev/null && break
    sleep 0.1
done
base="$(grep -o 'http://[0-9.:]*' "$port_file" | head -n1)"
[[ -n "$base" ]] || { cat "$work/server.log" >&2; die "fletch did not start"; }
# A debug build: thresholds on errors and 503s apply, latency is reported only.
"$work/loadgen" --smoke --ignore-latency --base-url "$base" || failed+=("load smoke")
kill "$server_pid" 2>/dev/null || true
wait "$server_pid" 2>/dev/null || true
server_pid=""

step "Kubernetes chart (helm lint --strict, helm template)"
helm="$FLETCH_CACHE/go/bin/helm"
chart=deploy/helm/fletch
chart_ok=1
# The defaults, the variant that replaces the old Query API's NodePort with an existing
# Secret and a fixed replica count, and the one with a Ballista scheduler and executors.
for variant in "" "--set service.type=NodePort --set autoscaling.enabled=false --set secret.create=false --set secret.existingSecret=fletch-tokens" "--set ballista.enabled=true"; do
    # shellcheck disable=SC2086  # the variant is a list of flags
    "$helm" lint --strict "$chart" $variant || chart_ok=0
    # shellcheck disable=SC2086
    "$helm" template fletch "$chart" --namespace log-pipeline $variant > "$work/chart.yaml" \
        && python3 scripts/check_chart.py < "$work/chart.yaml" || chart_ok=0
done
grep -q "nodePort: 30801" <("$helm" template fletch "$chart" --set service.type=NodePort) || chart_ok=0
grep -q 'FLETCH_BALLISTA__SCHEDULER' <("$helm" template fletch "$chart" --set ballista.enabled=true) || chart_ok=0
[[ $chart_ok -eq 1 ]] || failed+=("Kubernetes chart")

if (( ${#failed[@]} )); then
    log "FAILED: ${failed[*]}"
    exit 1
fi
log "all suites passed"
