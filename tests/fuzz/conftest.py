"""The fuzz suite's world: seeds, a real PostgreSQL and Parquet directory filled by
`fletch load`, and a fletch server that is restarted whenever a case kills it.

Environment:
  FLETCH_TEST_PG_URL  PostgreSQL to use (required; database `fletch_fuzz` is recreated in it)
  FLETCH_BIN          fletch binary (default $CARGO_TARGET_DIR/debug/fletch, else target/debug/fletch)
  FLETCH_FUZZ_SEED    the "fresh" seed (default: random; printed either way)
  FLETCH_FUZZ_CASES   generated cases per seed (default 2500), split across the categories

A missing PostgreSQL, binary or server start is a test *failure*, never a skip.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from fuzzlib import ANSWER_LIMIT_S, CASES, FIXED_SEED, FRESH_SEED, QUERY_TIMEOUT_S, RECORD, ROWS

REPO = Path(__file__).resolve().parents[2]


def _fail(msg):
    pytest.fail(msg, pytrace=False)


def fletch_bin():
    b = os.environ.get("FLETCH_BIN")
    if not b:
        target = os.environ.get("CARGO_TARGET_DIR") or str(REPO / "target")
        b = os.path.join(target, "debug", "fletch")
    if not os.access(b, os.X_OK):
        _fail(f"fletch binary not found at {b}: build it (cargo build) or set FLETCH_BIN")
    return b


def psql_scalar(url, sql):
    out = subprocess.run(["psql", url, "-XtAc", sql], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"psql {sql!r}: {out.stderr}")
    return int(out.stdout.strip())


def snapshot(pg_url, parquet_dir):
    """What must not change during the run: the database's tables and the Parquet files."""
    out = subprocess.run(["psql", pg_url, "-XtAc", "SELECT string_agg(schemaname || '.' || tablename, ',' ORDER BY schemaname, tablename) "
                          "FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"],
                         capture_output=True, text=True, timeout=60, check=True)
    files = sorted((str(p.relative_to(parquet_dir)), p.stat().st_size) for p in parquet_dir.rglob("*") if p.is_file())
    return out.stdout.strip(), files


def describe_exit(rc):
    if rc is None:
        return "running"
    if rc < 0:
        return f"killed by {signal.Signals(-rc).name}"
    return f"exit code {rc}"


# What a dying fletch says last: the lines worth quoting in a failure.
_DEATH_LINE = re.compile(r"panick|overflow|fatal|abort|SIG|memory|thread '", re.I)


class Server:
    def __init__(self, number, proc, http_port, flight_port, log):
        self.number, self.proc, self.http_port, self.flight_port, self.log = number, proc, http_port, flight_port, log

    @property
    def grpc(self):
        return f"grpc://127.0.0.1:{self.flight_port}"

    def exit_code(self, wait_s=0.0):
        """The process's exit status, waiting up to wait_s for it to die: a crash drops
        the client's connection a moment before the process is gone."""
        try:
            return self.proc.wait(timeout=wait_s) if wait_s else self.proc.poll()
        except subprocess.TimeoutExpired:
            return None

    def cpu_seconds(self):
        try:
            fields = open(f"/proc/{self.proc.pid}/stat").read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return 0.0

    def healthy(self, timeout=5.0):
        if self.proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/health", timeout=timeout) as r:
                return r.status == 200 and json.loads(r.read()) == {"status": "UP"}
        except Exception:  # noqa: BLE001 - any failure means "not healthy"
            return False

    def death_note(self):
        lines = self.log.read_text(errors="replace").splitlines()
        picked = [ln for ln in lines if _DEATH_LINE.search(ln)] or lines
        return f"{describe_exit(self.proc.poll())}; server log {self.log}: " + " | ".join(picked[-4:])[-900:]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Fleet:
    """One fletch at a time, replaced when a case kills or wedges it, so one crash does
    not hide the findings after it. Every replacement is recorded with its cause."""

    def __init__(self, pg_url, parquet, workdir):
        self.pg_url, self.parquet, self.workdir = pg_url, parquet, workdir
        self.server = None
        self.started = 0

    def _start(self):
        self.started += 1
        n = self.started
        log, out = self.workdir / f"server-{n}.log", self.workdir / f"server-{n}.out"
        cmd = [fletch_bin(), "serve", "--pg-url", self.pg_url, "--parquet-url", self.parquet,
               "--http-listen", "127.0.0.1:0", "--flight-listen", "127.0.0.1:0",
               "--set", f"admission.query_timeout_ms={int(QUERY_TIMEOUT_S * 1000)}"]
        with open(out, "w") as o, open(log, "w") as e:
            proc = subprocess.Popen(cmd, stdout=o, stderr=e, env={**os.environ, "RUST_BACKTRACE": "0"})
        deadline = time.time() + 90
        while time.time() < deadline:
            if proc.poll() is not None:
                _fail(f"fletch exited at start ({describe_exit(proc.returncode)}):\n{log.read_text()[-3000:]}")
            text = out.read_text()
            m1, m2 = re.search(r"http://[0-9.]+:(\d+)", text), re.search(r"grpc://[0-9.]+:(\d+)", text)
            if m1 and m2:
                s = Server(n, proc, int(m1.group(1)), int(m2.group(1)), log)
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{s.http_port}/ready", timeout=2) as r:
                        if r.status == 200:
                            return s
                except Exception:  # noqa: BLE001 - not ready yet
                    pass
            time.sleep(0.2)
        proc.kill()
        _fail(f"fletch did not become ready within 90 s:\n{log.read_text()[-3000:]}")

    def live(self):
        """The running server; a dead or unresponsive one is replaced first."""
        if self.server is not None and not self.server.healthy():
            self.replace("found dead or unresponsive before a test")
        if self.server is None:
            self.server = self._start()
        return self.server

    def replace(self, why):
        old = self.server
        if old is not None:
            old.exit_code(wait_s=2)
            note = old.death_note() if old.proc.poll() is not None else "alive, replaced"
            old.stop()
            RECORD.replacements.append((why, note))
        self.server = self._start()
        return self.server

    def pg_active(self):
        """Statements fletch still has running in PostgreSQL: (pid, seconds, query)."""
        sql = ("SELECT pid, extract(epoch FROM now() - query_start)::int, left(regexp_replace(query, '\\s+', ' ', 'g'), 160) "
               "FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' AND pid <> pg_backend_pid()")
        out = subprocess.run(["psql", self.pg_url, "-XtA", "-F", "\t", "-c", sql], capture_output=True, text=True, timeout=30)
        return [ln.split("\t", 2) for ln in out.stdout.splitlines() if ln.strip()]

    def settle(self, grace_s):
        """Wait up to grace_s for PostgreSQL to finish fletch's statements; return those
        still running then, after cancelling them so later cases run on an idle database."""
        t0 = time.monotonic()
        while True:
            active = self.pg_active()
            if not active:
                return []
            if time.monotonic() - t0 >= grace_s:
                break
            time.sleep(0.2)
        pids = ",".join(a[0] for a in active)
        subprocess.run(["psql", self.pg_url, "-XtAc", f"SELECT pg_cancel_backend(pid) FROM unnest(ARRAY[{pids}]) pid"],
                       capture_output=True, timeout=30)
        while self.pg_active() and time.monotonic() - t0 < grace_s + 10:
            time.sleep(0.2)
        return active

    def stop(self):
        if self.server is not None:
            self.server.stop()


@pytest.fixture(scope="session")
def workdir():
    d = Path(tempfile.mkdtemp(prefix="fletch-fuzz-"))
    RECORD.failures_file = d / "failures.jsonl"
    yield d
    if not RECORD.failures:  # failing runs keep their server logs and failing cases
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_url():
    base = os.environ.get("FLETCH_TEST_PG_URL", "")
    if not base:
        _fail("FLETCH_TEST_PG_URL is not set: start one with `scripts/pg.sh start DIR` "
              "(tests/fuzz/run.sh does this outside CI)")
    try:
        psql_scalar(base, "SELECT 1")
    except Exception as e:  # noqa: BLE001 - any failure to reach PostgreSQL is fatal here
        _fail(f"PostgreSQL at {base} is not reachable: {e}")
    if "/" not in base.split("://", 1)[-1]:
        _fail(f"FLETCH_TEST_PG_URL must name a database: {base}")
    subprocess.run(["psql", base, "-XqAc", "DROP DATABASE IF EXISTS fletch_fuzz WITH (FORCE)"], check=True)
    subprocess.run(["psql", base, "-XqAc", "CREATE DATABASE fletch_fuzz"], check=True)
    return base.rsplit("/", 1)[0] + "/fletch_fuzz"


@pytest.fixture(scope="session")
def parquet_dir(pg_url, workdir):
    """Load the rows with fletch's own loader; returns the Parquet directory (a Path)."""
    d = workdir / "parquet"
    args = ["--pg-url", pg_url, "--parquet", f"file://{d}", "--rows", str(ROWS), "--seed", "7", "--file-rows", "5000"]
    out = subprocess.run([fletch_bin(), "load", "--quiet", *args], capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        _fail(f"fletch load failed:\n{out.stderr}")
    assert psql_scalar(pg_url, "SELECT count(*) FROM logs") == ROWS
    return d


@pytest.fixture(scope="session")
def baseline(pg_url, parquet_dir):
    return snapshot(pg_url, parquet_dir)


@pytest.fixture(scope="session")
def fleet(pg_url, parquet_dir, workdir, baseline):
    f = Fleet(pg_url, f"file://{parquet_dir}", workdir)
    yield f
    f.stop()


@pytest.fixture
def server(fleet):
    return fleet.live()


def pytest_report_header(config):
    return (f"fletch fuzz: fixed seed {FIXED_SEED}, fresh seed {FRESH_SEED} "
            f"(reproduce: FLETCH_FUZZ_SEED={FRESH_SEED}); {CASES} generated cases per seed; "
            f"query_timeout {QUERY_TIMEOUT_S:g} s, answer limit {ANSWER_LIMIT_S:g} s")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    tr = terminalreporter
    tr.section("fletch fuzz")
    tr.write_line(f"seeds: fixed {FIXED_SEED}, fresh {FRESH_SEED}  ->  reproduce with FLETCH_FUZZ_SEED={FRESH_SEED}")
    tr.write_line(f"cases run: {RECORD.cases}; failing cases: {len(RECORD.failures)}; "
                  f"server replacements: {len(RECORD.replacements)}")
    for why, note in RECORD.replacements:
        tr.write_line(f"  server replaced ({why}): {note[:400]}")
    if RECORD.failures:
        tr.write_line(f"every failing case in full: {RECORD.failures_file}")
