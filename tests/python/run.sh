#!/usr/bin/env bash
# Client tests with real clients (pyarrow.flight, ADBC Flight SQL, Spark over the Flight SQL
# JDBC driver) against a real fletch server; see tests/python/conftest.py.
#
#   FLETCH_TEST_PG_URL=postgres://... bash tests/python/run.sh [pytest args]
#
# Environment (FLETCH_TEST_PG_URL, FLETCH_BIN, FLETCH_VENV): see tests/pytest_suite.sh.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec bash "$here/../pytest_suite.sh" "$here" python-tests "$@"
