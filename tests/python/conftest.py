"""Fixtures for the client tests: a real fletch server over a real PostgreSQL and a file://
Parquet directory, both filled with `fletch load`.

Environment:
  FLETCH_TEST_PG_URL  PostgreSQL to use (required; a database `fletch_pytest` is recreated in it)
  FLETCH_BIN          fletch binary (default $CARGO_TARGET_DIR/debug/fletch, else target/debug/fletch)
  FLETCH_JDBC_JAR     Flight SQL JDBC driver (default /var/cache/fletch/jars/flight-sql-jdbc-driver.jar)
  FLETCH_TEST_HDFS_URL  MiniDFS for test_spark_archive.py and test_ballista.py (required under CI; elsewhere started
                      with scripts/minidfs.sh when not set)

A missing PostgreSQL, binary or server start is a test *failure*, never a skip.
"""

import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
# Rows in both PostgreSQL and Parquet (same ids 1..BOTH), then rows in PostgreSQL only.
BOTH = 20_000
PG_ONLY = 30_000
TOKEN = "py-t0ken"
CI = os.environ.get("CI") in ("true", "1")
JDBC_JAR = os.environ.get("FLETCH_JDBC_JAR", "/var/cache/fletch/jars/flight-sql-jdbc-driver.jar")


def _fail(msg):
    # pytest.fail inside a session fixture errors every test that needs it: loud, not skipped.
    pytest.fail(msg, pytrace=False)


def fletch_bin():
    b = os.environ.get("FLETCH_BIN")
    if not b:
        target = os.environ.get("CARGO_TARGET_DIR") or str(REPO / "target")
        b = os.path.join(target, "debug", "fletch")
    if not os.access(b, os.X_OK):
        _fail(f"fletch binary not found at {b}: build it (cargo build) or set FLETCH_BIN")
    return b


class Pg:
    """psql against one database: the oracle every count is checked against."""

    def __init__(self, url):
        self.url = url

    def scalar(self, sql):
        out = subprocess.run(["psql", self.url, "-XtAc", sql], capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"psql {sql!r}: {out.stderr}")
        return int(out.stdout.strip())


@dataclass
class Server:
    http: str  # http://127.0.0.1:PORT
    flight_port: int
    proc: subprocess.Popen
    log: Path

    @property
    def grpc(self):
        return f"grpc://127.0.0.1:{self.flight_port}"

    @property
    def jdbc_url(self):
        return f"jdbc:arrow-flight-sql://127.0.0.1:{self.flight_port}/?useEncryption=false"


def _database_url(base, name):
    if "/" not in base.split("://", 1)[-1]:
        _fail(f"FLETCH_TEST_PG_URL must name a database: {base}")
    return base.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session")
def workdir():
    d = Path(tempfile.mkdtemp(prefix="fletch-pytest-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def pg(workdir):
    base = os.environ.get("FLETCH_TEST_PG_URL", "")
    if not base:
        _fail("FLETCH_TEST_PG_URL is not set: start one with `scripts/pg.sh start DIR` "
              "(tests/python/run.sh does this outside CI)")
    admin = Pg(base)
    try:
        admin.scalar("SELECT 1")
    except Exception as e:  # noqa: BLE001 - any failure to reach PostgreSQL is fatal here
        _fail(f"PostgreSQL at {base} is not reachable: {e}")
    subprocess.run(["psql", base, "-XqAc", "DROP DATABASE IF EXISTS fletch_pytest WITH (FORCE)"], check=True)
    subprocess.run(["psql", base, "-XqAc", "CREATE DATABASE fletch_pytest"], check=True)
    return Pg(_database_url(base, "fletch_pytest"))


@pytest.fixture(scope="session")
def data(pg, workdir):
    """Load the rows with fletch's own loader; returns the Parquet directory URL."""
    parquet = f"file://{workdir / 'parquet'}"
    binary = fletch_bin()
    for args in (
        ["--pg-url", pg.url, "--parquet", parquet, "--rows", str(BOTH), "--seed", "7", "--file-rows", "8000"],
        ["--pg-url", pg.url, "--rows", str(PG_ONLY), "--seed", "8"],
    ):
        out = subprocess.run([binary, "load", "--quiet", *args], capture_output=True, text=True, timeout=300)
        if out.returncode != 0:
            _fail(f"fletch load {args} failed:\n{out.stderr}")
    assert pg.scalar("SELECT count(*) FROM logs") == BOTH + PG_ONLY
    return parquet


def _start(pg, parquet, workdir, name, extra=(), require_ready=True):
    """Starts `fletch serve`; waits for /ready to say 200 (or, without require_ready, for any
    HTTP answer: tests that check /ready themselves then fail with its body)."""
    log = workdir / f"{name}.log"
    out = workdir / f"{name}.out"
    cmd = [fletch_bin(), "serve", "--pg-url", pg.url, "--parquet-url", parquet,
           "--http-listen", "127.0.0.1:0", "--flight-listen", "127.0.0.1:0", *extra]
    proc = subprocess.Popen(cmd, stdout=open(out, "w"), stderr=open(log, "w"))
    deadline = time.time() + 60
    http = flight = None
    while time.time() < deadline:
        if proc.poll() is not None:
            _fail(f"fletch exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        text = out.read_text()
        m1 = re.search(r"http://([0-9.]+:\d+)", text)
        m2 = re.search(r"grpc://[0-9.]+:(\d+)", text)
        if m1 and m2:
            http, flight = f"http://{m1.group(1)}", int(m2.group(1))
            try:
                if requests.get(f"{http}/ready", timeout=2).status_code == 200 or not require_ready:
                    return Server(http, flight, proc, log)
            except requests.RequestException:
                pass
        time.sleep(0.2)
    proc.kill()
    _fail(f"fletch did not become ready within 60 s (http={http}, flight={flight}):\n{log.read_text()[-4000:]}")


def stop(server):
    server.proc.terminate()
    server.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def server(pg, data, workdir):
    s = _start(pg, data, workdir, "open")
    yield s
    stop(s)


@pytest.fixture(scope="session")
def locked_server(pg, data, workdir):
    """The same server with authentication on (one static token)."""
    s = _start(pg, data, workdir, "locked", ["--set", f"auth.tokens={TOKEN}"])
    yield s
    stop(s)


@pytest.fixture(scope="session")
def spark():
    """One local Spark for the whole session (starting one costs seconds): test_spark.py reads
    fletch through the Flight SQL JDBC driver with it, test_spark_archive.py writes archives."""
    from spark_archive import spark_session

    s = spark_session(jars=[JDBC_JAR] if os.path.isfile(JDBC_JAR) else [])
    yield s
    s.stop()



def spark_archive_at(spark, url, **kw):
    """An archive as the pipeline's Spark job writes it (see spark_archive.py)."""
    from spark_archive import write_archive

    a = write_archive(spark, url, **kw)
    print(f"\nspark archive {url} (tz {a.tz}): {a.rows} rows, {a.batches} micro-batches, {len(a.files)} files, "
          f"written in {a.seconds:.1f} s")
    return a


@pytest.fixture(scope="session")
def hdfs_url():
    url = os.environ.get("FLETCH_TEST_HDFS_URL", "").rstrip("/")
    if url:
        yield url
        return
    if CI:
        _fail("FLETCH_TEST_HDFS_URL is not set (required under CI: scripts/test.sh starts MiniDFS)")
    script = str(REPO / "scripts" / "minidfs.sh")
    running = subprocess.run(["bash", script, "status"], capture_output=True).returncode == 0
    out = subprocess.run(["bash", script, "start"], capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        _fail(f"scripts/minidfs.sh start failed:\n{out.stderr[-3000:]}")
    yield out.stdout.strip().splitlines()[-1]
    if not running:
        subprocess.run(["bash", script, "stop"], capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def hdfs_archive(spark, hdfs_url):
    url = f"{hdfs_url}/fletch-pytest/{uuid.uuid4().hex[:12]}/raw"
    a = spark_archive_at(spark, url, tz="UTC")
    yield a
    from spark_archive import HadoopFs

    HadoopFs(spark, url).delete(url.rsplit("/", 1)[0])
