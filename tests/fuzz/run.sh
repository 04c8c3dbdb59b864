#!/usr/bin/env bash
# Fuzz suite: hostile HTTP, SQL, Flight and Flight SQL input against a real fletch server
# (see tests/fuzz/README.md and tests/fuzz/conftest.py).
#
#   FLETCH_TEST_PG_URL=postgres://... bash tests/fuzz/run.sh [pytest args]
#
# - FLETCH_TEST_PG_URL: required under CI=true (missing = failure). Outside CI a private
#   cluster is started with scripts/pg.sh in /tmp/fletch-fuzz-pg when it is not set.
# - FLETCH_BIN: the fletch binary; when unset, `cargo build --bin fletch` is run first and
#   $CARGO_TARGET_DIR/debug/fletch (default /var/cache/fletch-target) is used.
# - FLETCH_VENV: the venv made by `scripts/setup.sh python` (default /var/cache/fletch/venv).
# - FLETCH_FUZZ_SEED: the fresh seed to replay (default random; printed at start and end).
# - FLETCH_FUZZ_CASES: generated cases per seed (default 2500; two seeds run).
# Exits non-zero when any test fails, errors, or when no test ran at all.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${FLETCH_VENV:-${FLETCH_CACHE:-/var/cache/fletch}/venv}"
python="$venv/bin/python"
[[ -x "$python" ]] || { echo "[fuzz] no venv at $venv: run scripts/setup.sh python" >&2; exit 2; }

if [[ -z "${FLETCH_TEST_PG_URL:-}" ]]; then
    if [[ "${CI:-}" == "true" || "${CI:-}" == "1" ]]; then
        echo "[fuzz] FLETCH_TEST_PG_URL is not set (required in CI)" >&2
        exit 2
    fi
    FLETCH_TEST_PG_URL="$(bash "$root/scripts/pg.sh" start /tmp/fletch-fuzz-pg)"
    export FLETCH_TEST_PG_URL
fi

if [[ -z "${FLETCH_BIN:-}" ]]; then
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/fletch-target}"
    (cd "$root" && cargo build --bin fletch)
    export FLETCH_BIN="$CARGO_TARGET_DIR/debug/fletch"
fi

cd "$here"
set +e
"$python" -m pytest -p no:cacheprovider -ra "$@"
rc=$?
set -e
if [[ $rc -eq 5 ]]; then
    echo "[fuzz] pytest collected no tests: that is a failure" >&2
    exit 1
fi
exit $rc
