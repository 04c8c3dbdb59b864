"""Three fletch replicas behind HAProxy (deploy/haproxy/fletch.cfg) on loopback.

- A Flight SQL prepared statement made (and bound) on one replica runs on another: the
  handle carries the statement and its values.
- Under load through the balancer (tools/loadgen), one replica gets SIGTERM while a slow
  HTTP export (pinned to it through the balancer) and a slow Flight stream (straight to
  it) are under way: both complete with every row, no request fails except with 503 +
  Retry-After, the replica answers 503 on /ready at once and exits 0 within its grace
  period.

HAProxy and Go (to build tools/loadgen) are required: missing is a failure, not a skip.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from http.client import HTTPConnection

import pyarrow as pa
import pyarrow.flight as flight
import pytest
import requests

from conftest import BOTH, PG_ONLY, REPO, _start
from flight_sql_wire import any_cmd, pb_bytes, pb_field, pb_str

GRACE_MS = 30_000
DELAY_MS = 1_000
LOAD_SECONDS = 30
# The slow streams: every row of postgres.logs four times (about 65 MB of NDJSON, 25
# Arrow batches), read slowly. Socket buffers on the way hold about 15 MB, so the replica
# is still sending for many seconds after it is told to stop (about 13 s for the export,
# 18 s for the Flight stream).
COPIES = 4
BIG = " UNION ALL ".join(["SELECT * FROM postgres.logs"] * COPIES)
EXPORT_READ_BYTES_PER_S = 5_000_000
SMALL_BUFFER = 64 * 1024


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def replicas(pg, data, workdir):
    extra = ["--set", f"http.shutdown_grace_ms={GRACE_MS}", "--set", f"http.shutdown_delay_ms={DELAY_MS}"]
    started = [_start(pg, data, workdir, f"replica{i}", extra) for i in (1, 2, 3)]
    yield started
    for s in started:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def balancer(replicas, workdir):
    haproxy = shutil.which("haproxy")
    if not haproxy:
        pytest.fail("haproxy not found: run scripts/setup.sh haproxy", pytrace=False)
    http_port, flight_port = _free_port(), _free_port()
    env = dict(os.environ, FLETCH_LB_HTTP=f"127.0.0.1:{http_port}", FLETCH_LB_FLIGHT=f"127.0.0.1:{flight_port}")
    for i, r in enumerate(replicas, 1):
        env[f"FLETCH_HTTP_{i}"] = r.http.removeprefix("http://")
        env[f"FLETCH_FLIGHT_{i}"] = f"127.0.0.1:{r.flight_port}"
        env[f"FLETCH_CHECK_PORT_{i}"] = r.http.rsplit(":", 1)[1]
    log = workdir / "haproxy.log"
    proc = subprocess.Popen([haproxy, "-db", "-f", str(REPO / "deploy/haproxy/fletch.cfg")], env=env,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{http_port}"
    deadline = time.time() + 30
    while True:
        if proc.poll() is not None:
            pytest.fail(f"haproxy exited with {proc.returncode}:\n{log.read_text()}", pytrace=False)
        try:
            # Every replica answers through the balancer once its check has passed.
            if all(requests.get(f"{base}/ready", headers={"X-Fletch-Replica": f"r{i}"}, timeout=2).status_code == 200
                   for i in (1, 2, 3)):
                break
        except requests.RequestException:
            pass
        if time.time() > deadline:
            proc.kill()
            pytest.fail(f"haproxy did not become ready:\n{log.read_text()}", pytrace=False)
        time.sleep(0.5)
    yield base
    proc.terminate()
    proc.wait(timeout=10)


def _prepared_query(handle):
    return any_cmd("CommandPreparedStatementQuery", pb_bytes(1, handle))


def test_prepared_statement_runs_on_another_replica(replicas, pg):
    a, b, c = (flight.connect(r.grpc) for r in replicas)
    sql = "SELECT count(*) AS n FROM postgres.logs WHERE level = $1 AND id > $2"
    action = flight.Action("CreatePreparedStatement", any_cmd("ActionCreatePreparedStatementRequest", pb_str(1, sql)))
    handle = pb_field(pb_field(next(iter(a.do_action(action))).body.to_pybytes(), 2), 1)

    # Bound on replica 1: the answer is a handle that carries the values.
    params = pa.record_batch([pa.array(["ERROR"]), pa.array([10_000], pa.int64())], names=["$1", "$2"])
    writer, reader = a.do_put(flight.FlightDescriptor.for_command(_prepared_query(handle)), params.schema)
    writer.write_batch(params)
    writer.done_writing()
    bound = pb_field(reader.read().to_pybytes(), 1)
    writer.close()

    want = pg.scalar("SELECT count(*) FROM logs WHERE level = 'ERROR' AND id > 10000")
    assert want > 0
    # Executed on replica 2: planned there (get_flight_info), fetched there (do_get).
    info = b.get_flight_info(flight.FlightDescriptor.for_command(_prepared_query(bound)))
    assert b.do_get(info.endpoints[0].ticket).read_all().column("n").to_pylist() == [want]
    # The unbound handle made on replica 1, bound with other values on replica 3.
    writer, reader = c.do_put(flight.FlightDescriptor.for_command(_prepared_query(handle)), params.schema)
    writer.write_batch(pa.record_batch([pa.array(["WARN"]), pa.array([0], pa.int64())], names=["$1", "$2"]))
    writer.done_writing()
    rebound = pb_field(reader.read().to_pybytes(), 1)
    writer.close()
    table = a.do_get(flight.Ticket(_prepared_query(rebound))).read_all()
    assert table.column("n").to_pylist() == [pg.scalar("SELECT count(*) FROM logs WHERE level = 'WARN'")]
    for client in (a, b, c):
        client.close()


# --- SIGTERM under load ------------------------------------------------------------------

def _loadgen(workdir):
    go = shutil.which("go")
    if not go:
        pytest.fail("go not found: it builds tools/loadgen", pytrace=False)
    out = workdir / "loadgen"
    subprocess.run([go, "-C", str(REPO / "tools/loadgen"), "build", "-o", str(out), "."], check=True, timeout=600)
    return out


def _slow_export(base, state):
    """Export BIG as NDJSON (`POST /api/sql`) through the balancer, pinned to replica 1,
    reading slowly; records progress in `state`."""
    host, port = base.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
    sock.connect((host, int(port)))
    conn = HTTPConnection(host, int(port), timeout=120)
    conn.sock = sock
    conn.request("POST", "/api/sql?format=ndjson", body=json.dumps({"sql": BIG}),
                 headers={"X-Fletch-Replica": "r1", "Content-Type": "application/json"})
    resp = conn.getresponse()
    state["status"] = resp.status
    body = bytearray()
    chunk = 16 * 1024
    while True:
        block = resp.read(chunk)
        if not block:
            break
        body += block
        state["bytes"] = len(body)
        time.sleep(len(block) / EXPORT_READ_BYTES_PER_S)
    state["body"] = bytes(body)
    state["done_at"] = time.monotonic()


def _slow_flight(replica, state):
    """Stream BIG over Flight straight from replica 1, slowly."""
    client = flight.connect(replica.grpc)
    reader = client.do_get(flight.Ticket(json.dumps({"sql": BIG}).encode()))
    rows = 0
    for chunk in reader:
        rows += chunk.data.num_rows
        state["rows"] = rows
        time.sleep(0.5)
    state["done_at"] = time.monotonic()
    client.close()


def _run(target, state):
    def wrapped():
        try:
            target(state)
        except Exception as e:  # noqa: BLE001 - reported by the test's assertions
            state["error"] = repr(e)
    t = threading.Thread(target=wrapped, daemon=True)
    t.start()
    return t


def test_sigterm_under_load_fails_nothing(replicas, balancer, pg, workdir):
    loadgen = _loadgen(workdir)
    report = workdir / "loadgen.json"
    lg_log = workdir / "loadgen.log"
    lg = subprocess.Popen([str(loadgen), "--base-url", balancer, "--scenario", "throughput_postgres_logs",
                           "--connections", "8", "--duration", f"{LOAD_SECONDS}s", "--ignore-latency",
                           "--progress", "0", "--json", str(report)],
                          cwd=REPO, stdout=open(lg_log, "w"), stderr=subprocess.STDOUT)
    time.sleep(3)
    export, stream = {}, {}
    threads = [_run(lambda s: _slow_export(balancer, s), export), _run(lambda s: _slow_flight(replicas[0], s), stream)]
    time.sleep(3)
    assert export.get("status") == 200 and export.get("bytes", 0) > 0, export
    assert stream.get("rows", 0) > 0 and "done_at" not in stream, stream
    assert "done_at" not in export, "the export finished before the replica was stopped: slow it down"

    stopping = replicas[0]
    sent = time.monotonic()
    stopping.proc.send_signal(signal.SIGTERM)
    # The signal is handled asynchronously: within a moment, well inside the delay.
    deadline = sent + DELAY_MS / 1000 / 2
    while (ready := requests.get(f"{stopping.http}/ready", timeout=2)).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ready.status_code == 503, ready.text
    assert ready.headers.get("Retry-After") and ready.json()["status"] == "DRAINING"
    # It waits for its streams, and no longer than its grace period.
    time.sleep(DELAY_MS / 1000 + 1)
    assert stopping.proc.poll() is None, "the replica exited while its streams were running"
    limit = (DELAY_MS + GRACE_MS) / 1000
    rc = stopping.proc.wait(timeout=limit + 5)
    exited = time.monotonic() - sent
    assert rc == 0, stopping.log.read_text()[-3000:]
    assert exited < limit, f"exited {exited:.1f} s after SIGTERM; delay + grace is {limit} s"
    log = stopping.log.read_text()
    assert "drained; exiting" in log and "were cut" not in log and "were closed" not in log, log[-3000:]

    for t in threads:
        t.join(timeout=120)
    total = pg.scalar("SELECT count(*) FROM logs")
    assert total == BOTH + PG_ONLY
    assert "error" not in export, export.get("error")
    lines = export["body"].split(b"\n")
    assert lines[-1] == b"", "the export does not end with a complete line"
    assert len(lines) - 1 == COPIES * total
    assert json.loads(lines[-2])["id"] and json.loads(lines[0])["id"]
    assert export["done_at"] > sent, "the export was not under way during the stop"
    assert "error" not in stream, stream.get("error")
    assert stream["rows"] == COPIES * total

    assert lg.wait(timeout=LOAD_SECONDS + 90) is not None
    run = json.loads(report.read_text())
    [s] = run["scenarios"]
    summary = s["summary"]
    assert summary["requests"] > 100, lg_log.read_text()
    # 503s are allowed: while the two slow streams run, their UNION ALL scans hold most of
    # replica 1's PostgreSQL connections, and a few pages there wait past the queue
    # timeout (runs here saw 2-4 of about 75,000, all from replica 1 before it stopped).
    for key in ("non_503_errors", "count_503_missing_retry_after", "transport_errors", "timeouts", "bad_bodies"):
        assert summary[key] == 0, f"{key}: {json.dumps(summary, indent=1)}\n{lg_log.read_text()[-3000:]}"
    print(f"replica 1 exited {exited:.1f} s after SIGTERM; export done {export['done_at'] - sent:.1f} s after; "
          f"load: {summary['requests']} requests, {summary['ok']} ok, {summary['count_503']} 503s, "
          f"{summary['req_per_s']:.0f} req/s")
    # The balancer kept serving from the other two after the stop.
    assert all(requests.get(f"{balancer}/ready", timeout=2).status_code == 200 for _ in range(6))
