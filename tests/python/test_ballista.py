"""Heavy SQL on Ballista: a scheduler and two executors, each its own `fletch scheduler` /
`fletch executor` process on loopback, reading the archive Spark wrote to MiniDFS (MAP
metadata, hive partitions, `_spark_metadata`) and PostgreSQL on their own connections.

Every statement runs twice through the same fletch server, `"engine": "local"` and
`"engine": "ballista"`, and the rows must be the same; the server's metrics must show that
the second really ran as a Ballista job. A client that leaves while its job runs must get
the job cancelled at the scheduler.

    bash tests/python/run.sh -k ballista
"""

import io
import re
import socket
import subprocess
import time

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow.ipc as ipc
import pytest
import requests

from conftest import _fail, _start, fletch_bin, stop

GROUP_BY = ("SELECT level, service, count(*) AS n, min(timestamp) AS first, max(timestamp) AS last, "
            "sum(length(message)) AS chars FROM hdfs.logs GROUP BY level, service ORDER BY level, service")
# Metadata is a Parquet MAP in Spark's files: the projection to JSON text runs on executors.
TOP_K = ("SELECT timestamp, level, service, host, message, metadata FROM hdfs.logs WHERE level = 'ERROR' "
         "ORDER BY timestamp DESC, message LIMIT 25")
JOIN_POSTGRES = ("SELECT h.host, count(*) AS archived, max(p.live) AS live FROM hdfs.logs h "
                 "JOIN (SELECT host, count(*) AS live FROM postgres.logs GROUP BY host) p ON h.host = p.host "
                 "GROUP BY h.host ORDER BY h.host")
# Hundreds of millions of pairs: runs for far longer than the client waits.
ENDLESS = "SELECT sum(length(a.message) + length(b.message)) AS s FROM hdfs.logs a CROSS JOIN hdfs.logs b"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(args, log):
    return subprocess.Popen([fletch_bin(), *args], stdout=open(log, "w"), stderr=subprocess.STDOUT)


def _wait_for(pattern, log, proc, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        m = re.search(pattern, log.read_text())
        if m:
            return m
        if proc.poll() is not None:
            _fail(f"{proc.args[1]} exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        time.sleep(0.2)
    _fail(f"{proc.args[1]} did not print {pattern!r} within {seconds} s:\n{log.read_text()[-4000:]}")


def sql(server, statement, engine, timeout=120):
    r = requests.post(server.http + "/api/sql", json={"sql": statement, "format": "arrow", "engine": engine},
                      timeout=timeout)
    assert r.status_code == 200, f"{engine}: {r.status_code} {r.text[:2000]}"
    return ipc.open_stream(io.BytesIO(r.content)).read_all()


def metric(server, name, labels):
    text = requests.get(server.http + "/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.split()[-1])
    return 0.0


def ballista_runs(server):
    return metric(server, "fletch_source_executions_total", {"source": "hdfs", "kind": "ballista"})


@pytest.fixture(scope="module")
def cluster(pg, data, workdir, hdfs_archive):
    """Scheduler, two executors and a fletch server that knows the scheduler."""
    procs = []
    try:
        log = workdir / "ballista-scheduler.log"
        procs.append(_spawn(["scheduler", "--listen", "127.0.0.1:0", "--parquet-url", hdfs_archive.url], log))
        scheduler = _wait_for(r"df://127\.0\.0\.1:\d+", log, procs[-1]).group(0)
        executors = []
        for i in range(2):
            elog = workdir / f"ballista-executor-{i}.log"
            args = ["executor", "--scheduler", scheduler, "--flight-port", str(_free_port()),
                    "--grpc-port", str(_free_port()), "--slots", "2",
                    "--pg-url", pg.url, "--parquet-url", hdfs_archive.url]
            procs.append(_spawn(args, elog))
            executors.append(elog)
        server = _start(pg, hdfs_archive.url, workdir, "ballista-client",
                        ["--set", f"ballista.scheduler={scheduler}", "--set", "cache.ttl_ms=0",
                         "--set", "admission.query_timeout_ms=120000"], require_ready=False)
        # Executors register on their first heartbeat; until then a job would wait for them.
        deadline = time.time() + 90
        while True:
            try:
                sql(server, "SELECT count(*) FROM hdfs.logs WHERE level = 'INFO'", "ballista", timeout=15)
                break
            except (AssertionError, requests.RequestException) as e:
                if time.time() > deadline:
                    _fail(f"the Ballista cluster never ran a job: {e}\n{log.read_text()[-3000:]}")
                time.sleep(1)
        yield {"server": server, "scheduler_log": log, "executor_logs": executors, "executors": procs[1:3]}
        stop(server)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.mark.parametrize("statement", [GROUP_BY, TOP_K, JOIN_POSTGRES], ids=["group_by", "top_k", "join_postgres"])
def test_ballista_returns_what_local_execution_returns(cluster, statement):
    server = cluster["server"]
    local = sql(server, statement, "local")
    before = ballista_runs(server)
    distributed = sql(server, statement, "ballista")
    assert ballista_runs(server) == before + 1, "the statement did not run on Ballista"
    assert local.num_rows > 0
    assert distributed.schema.equals(local.schema), f"{distributed.schema} != {local.schema}"
    assert distributed.to_pylist() == local.to_pylist()


def test_every_executor_takes_tasks(cluster):
    """A scan of many files is split into tasks on both executors."""
    sql(cluster["server"], GROUP_BY, "ballista")
    for elog in cluster["executor_logs"]:
        assert re.search(r"Finished task", elog.read_text()), f"no task ran on {elog}:\n{elog.read_text()[-2000:]}"


def test_client_that_leaves_cancels_its_job(cluster):
    server, log = cluster["server"], cluster["scheduler_log"]
    cancelled = metric(server, "fletch_ballista_jobs_total", {"outcome": "cancelled"})
    with pytest.raises(requests.ReadTimeout):
        requests.post(server.http + "/api/sql", json={"sql": ENDLESS, "engine": "ballista"}, timeout=3)
    deadline = time.time() + 20
    while time.time() < deadline and metric(server, "fletch_ballista_jobs_total", {"outcome": "cancelled"}) == cancelled:
        time.sleep(0.2)
    assert metric(server, "fletch_ballista_jobs_total", {"outcome": "cancelled"}) == cancelled + 1
    job = re.findall(r"ballista job cancelled.*?job=(\S+)|job=(\S+).*?ballista job cancelled", server.log.read_text())
    assert job, server.log.read_text()[-3000:]
    job_id = [j for j in job[-1] if j][0]
    assert f"cancellation request for job {job_id}" in log.read_text(), log.read_text()[-3000:]
    # The executors are free again: a job after it finishes at once.
    started = time.time()
    sql(server, "SELECT count(*) FROM hdfs.logs", "ballista", timeout=60)
    assert time.time() - started < 30


def test_engine_is_checked(cluster, server):
    r = requests.post(cluster["server"].http + "/api/sql", json={"sql": "SELECT 1", "engine": "spark"}, timeout=10)
    assert r.status_code == 400 and "engine" in r.text
    # A server without a scheduler says so instead of running it here.
    r = requests.post(server.http + "/api/sql", json={"sql": "SELECT count(*) FROM hdfs.logs", "engine": "ballista"},
                      timeout=10)
    assert r.status_code == 400 and "[ballista] scheduler" in r.text, r.text


def _auto_server(pg, workdir, hdfs_archive, scheduler, name, *extra):
    return _start(pg, hdfs_archive.url, workdir, name,
                  ["--set", f"ballista.scheduler={scheduler}", "--set", "ballista.min_scan_bytes=1",
                   "--set", "cache.ttl_ms=0", *extra], require_ready=False)


def _scheduler(cluster):
    return re.search(r"df://\S+", cluster["scheduler_log"].read_text()).group(0)


def test_big_scans_go_to_ballista_by_themselves(pg, workdir, hdfs_archive, cluster):
    """`auto`: a scan of at least ballista.min_scan_bytes runs there, over HTTP and Flight SQL;
    PostgreSQL alone keeps its pushdown."""
    s = _auto_server(pg, workdir, hdfs_archive, _scheduler(cluster), "ballista-auto")
    try:
        before = ballista_runs(s)
        table = sql(s, GROUP_BY, "auto")
        assert ballista_runs(s) == before + 1 and table.num_rows > 0
        with flightsql.connect(s.grpc, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(GROUP_BY)
            assert cur.fetch_arrow_table().to_pylist() == table.to_pylist()
        assert ballista_runs(s) == before + 2
        # A Flight SQL client that asks for local execution gets it.
        engine = {"adbc.flight.sql.rpc.call_header.x-fletch-engine": "local"}
        with flightsql.connect(s.grpc, db_kwargs=engine, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(GROUP_BY)
            assert cur.fetch_arrow_table().to_pylist() == table.to_pylist()
        assert ballista_runs(s) == before + 2
        sql(s, "SELECT count(*) FROM postgres.logs", "auto")
        assert ballista_runs(s) == before + 2
    finally:
        stop(s)


def test_flight_sql_clients_choose_the_engine_by_call_header(cluster):
    """ADBC sends x-fletch-engine on every call (adbc.flight.sql.rpc.call_header.*): ballista
    sends a statement that auto would keep here, and a bad value is refused naming it."""
    server = cluster["server"]
    header = "adbc.flight.sql.rpc.call_header.x-fletch-engine"
    local = sql(server, GROUP_BY, "local")
    before = ballista_runs(server)
    with flightsql.connect(server.grpc, db_kwargs={header: "ballista"}, autocommit=True) as conn:
        with conn.cursor() as cur:
            cur.execute(GROUP_BY)
            assert cur.fetch_arrow_table().to_pylist() == local.to_pylist()
    assert ballista_runs(server) == before + 1, "the statement did not run on Ballista"
    with flightsql.connect(server.grpc, db_kwargs={header: "spark"}, autocommit=True) as conn:
        with conn.cursor() as cur, pytest.raises(flightsql.Error, match="unknown engine `spark`"):
            cur.execute(GROUP_BY)


def test_time_budget_cancels_the_job(pg, workdir, hdfs_archive, cluster):
    s = _auto_server(pg, workdir, hdfs_archive, _scheduler(cluster), "ballista-budget",
                     "--set", "admission.query_timeout_ms=2000")
    try:
        started = time.time()
        r = requests.post(s.http + "/api/sql", json={"sql": ENDLESS}, timeout=30)
        assert r.status_code in (503, 504) and "timeout" in r.text.lower(), r.text
        assert time.time() - started < 2 + 3
        deadline = time.time() + 20
        while time.time() < deadline and metric(s, "fletch_ballista_jobs_total", {"outcome": "cancelled"}) < 1:
            time.sleep(0.2)
        assert metric(s, "fletch_ballista_jobs_total", {"outcome": "cancelled"}) == 1
    finally:
        stop(s)


def test_errors_keep_their_meaning(pg, workdir, hdfs_archive, cluster):
    """The statement's own error is a 400 as locally; a scheduler that does not answer a 503."""
    server = cluster["server"]
    failed = metric(server, "fletch_ballista_jobs_total", {"outcome": "failed"})
    cancelled = metric(server, "fletch_ballista_jobs_total", {"outcome": "cancelled"})
    r = requests.post(server.http + "/api/sql", timeout=60, json={
        "sql": "SELECT 1 / (length(message) - length(message)) FROM hdfs.logs", "engine": "ballista"})
    assert r.status_code == 400 and "DivideByZero" in r.text, r.text
    # A job that failed by itself is not cancelled.
    assert metric(server, "fletch_ballista_jobs_total", {"outcome": "failed"}) == failed + 1
    assert metric(server, "fletch_ballista_jobs_total", {"outcome": "cancelled"}) == cancelled
    s = _auto_server(pg, workdir, hdfs_archive, f"df://127.0.0.1:{_free_port()}", "ballista-nobody")
    try:
        r = requests.post(s.http + "/api/sql", json={"sql": GROUP_BY}, timeout=30)
        assert r.status_code == 503 and r.headers.get("Retry-After") == "1", r.text
        assert "Ballista scheduler" in r.json()["message"]
    finally:
        stop(s)
