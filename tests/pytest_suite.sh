#!/usr/bin/env bash
# Runs one pytest suite of fletch against a real server (shared by tests/python/run.sh and
# tests/fuzz/run.sh, which say what their suite is).
#
#   bash tests/pytest_suite.sh SUITE_DIR TAG [pytest args]
#
# - FLETCH_TEST_PG_URL: required under CI=true (missing = failure). Outside CI a private
#   cluster is started with scripts/pg.sh in /tmp/fletch-TAG-pg when it is not set.
# - FLETCH_BIN: the fletch binary; when unset, `cargo build --bin fletch` is run first and
#   $CARGO_TARGET_DIR/debug/fletch (default /var/cache/fletch-target) is used.
# - FLETCH_VENV: the venv made by `scripts/setup.sh python` (default /var/cache/fletch/venv).
# Exits non-zero when any test fails, errors, or when no test ran at all.
set -euo pipefail
suite="$(cd "${1:?suite directory}" && pwd)"
tag="${2:?tag}"
shift 2
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${FLETCH_VENV:-${FLETCH_CACHE:-/var/cache/fletch}/venv}"
python="$venv/bin/python"
[[ -x "$python" ]] || { echo "[$tag] no venv at $venv: run scripts/setup.sh python" >&2; exit 2; }

if [[ -z "${FLETCH_TEST_PG_URL:-}" ]]; then
    if [[ "${CI:-}" == "true" || "${CI:-}" == "1" ]]; then
        echo "[$tag] FLETCH_TEST_PG_URL is not set (required in CI)" >&2
        exit 2
    fi
    FLETCH_TEST_PG_URL="$(bash "$root/scripts/pg.sh" start "/tmp/fletch-$tag-pg")"
    export FLETCH_TEST_PG_URL
fi

if [[ -z "${FLETCH_BIN:-}" ]]; then
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/fletch-target}"
    (cd "$root" && cargo build --bin fletch)
    export FLETCH_BIN="$CARGO_TARGET_DIR/debug/fletch"
fi

cd "$suite"
# Helpers shared by the suites (tests/flight_sql_wire.py).
export PYTHONPATH="$root/tests${PYTHONPATH:+:$PYTHONPATH}"
set +e
"$python" -m pytest -p no:cacheprovider -ra "$@"
rc=$?
set -e
if [[ $rc -eq 5 ]]; then
    echo "[$tag] pytest collected no tests: that is a failure" >&2
    exit 1
fi
exit $rc
