#!/usr/bin/env bash
# Fuzz suite: hostile HTTP, SQL, Flight and Flight SQL input against a real fletch server
# (see tests/fuzz/README.md and tests/fuzz/conftest.py).
#
#   FLETCH_TEST_PG_URL=postgres://... bash tests/fuzz/run.sh [pytest args]
#
# - FLETCH_FUZZ_SEED: the fresh seed to replay (default random; printed at start and end).
# - FLETCH_FUZZ_CASES: generated cases per seed (default 2500; two seeds run).
# Other environment (FLETCH_TEST_PG_URL, FLETCH_BIN, FLETCH_VENV): see tests/pytest_suite.sh.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec bash "$here/../pytest_suite.sh" "$here" fuzz "$@"
