"""fletch over an archive written by Spark Structured Streaming, as the pipeline writes it
(spark_archive.py: hive partitions year/month/day/hour, `_spark_metadata/` with a compacted
log, `metadata` as a Parquet MAP, INT96 `event_time`, no id/created_at, one orphan file of a
failed micro-batch). Every hdfs endpoint is compared with what Spark itself reads from the
same directory (spark.read.parquet, which honours `_spark_metadata`), never with fletch's code.

Archives: UTC on file:// and on MiniDFS (FLETCH_TEST_HDFS_URL; required under CI, elsewhere
started with scripts/minidfs.sh when not set), one written with the Spark session time zone
Asia/Kolkata (partition hours are not UTC hours), and a "mixed" directory without
`_spark_metadata` holding files of `fletch load` beside Spark's hive partitions. A control
directory written by `fletch load` alone over the same hours ("loaded") goes through the same
endpoint comparisons: it passes with a fletch that serves its own files, so a failure on a
Spark archive is fletch's, not the harness's.

    bash tests/python/run.sh -k spark_archive            # all of it
    bash tests/python/run.sh -k "spark_archive and file"   # one archive
"""

import csv
import io
import json
import shutil
import subprocess
import time
from dataclasses import dataclass

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow as pa
import pyarrow.flight as flight
import pytest
import requests

from conftest import REPO, _fail, _start, fletch_bin, spark_archive_at, stop
from spark_archive import (BEFORE_BOUNDARY, BOUNDARY, ORPHAN_MESSAGE, PARTITIONS, START, Archive, Truth, below, epoch,
                           local_path)

ROW_KEYS = ("id", "timestamp", "level", "service", "host", "message", "metadata")
LOGS = "/api/query/hdfs/logs"

# Filters (the HTTP API's parameters) checked on every endpoint that takes them.
FILTERS = {
    "all": {},
    "level": {"level": "ERROR"},
    "service": {"service": "payment-service"},
    "host": {"host": "worker-2"},
    "labels": {"level": "WARN", "service": "order-service", "host": "worker-1"},
    # Edges inside hours (and inside seconds).
    "window": {"start_time": epoch("2026-01-11T19:17:30.250"), "end_time": epoch("2026-01-12T01:42:10.500")},
    "window_labels": {"level": "INFO", "service": "api-gateway",
                      "start_time": epoch("2026-01-11T22:05:00"), "end_time": epoch("2026-01-12T03:59:59.999")},
    # Edges exactly at the row on the hour boundary (inclusive on both sides).
    "to_boundary": {"start_time": BOUNDARY - 1800.5, "end_time": BOUNDARY},
    "from_boundary": {"start_time": BOUNDARY, "end_time": BOUNDARY + 1799.75},
    "boundary_row": {"start_time": BOUNDARY, "end_time": BOUNDARY},
    "before_boundary": {"start_time": BEFORE_BOUNDARY, "end_time": BEFORE_BOUNDARY},
    # Open-ended: the newest hour, where the orphan file's rows are, and the oldest.
    "newest": {"start_time": epoch("2026-01-12T05:10:00.500")},
    "oldest": {"end_time": epoch("2026-01-11T18:00:00")},
}
# The columns Spark's writer adds must be visible in SQL (not through the HTTP row shape).
EXTRA_COLUMNS_SQL = "SELECT event_time, year, month, day, hour FROM hdfs.logs ORDER BY timestamp DESC LIMIT 5"
BOUNDARY_FILTERS = ["to_boundary", "from_boundary", "boundary_row", "before_boundary"]
AGG_FILTERS = ["all", "level", "host", "window", "newest", *BOUNDARY_FILTERS]
EXPORT_FILTERS = ["all", "labels", "window", "newest", "to_boundary", "boundary_row"]


@dataclass
class Case:
    name: str
    archive: object  # spark_archive.Archive (None for the mixed directory)
    truth: Truth
    server: object  # conftest.Server


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def file_archive(spark, workdir):
    return spark_archive_at(spark, f"file://{workdir}/spark-utc/raw", tz="UTC")


def _fletch_load(d, rows, file_rows, seed, start, rate):
    """`fletch load` into directory d (no PostgreSQL); returns the file:// URLs it wrote."""
    args = ["--parquet", f"file://{d}", "--rows", str(rows), "--file-rows", str(file_rows), "--seed", str(seed),
            "--start-time", repr(start), "--rows-per-second", repr(rate), "--quiet"]
    out = subprocess.run([fletch_bin(), "load", *args], capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        _fail(f"fletch load {args} failed:\n{out.stderr}")
    flat = sorted(f"file://{p}" for p in d.glob("*.parquet"))
    assert len(flat) == -(-rows // file_rows), f"fletch load wrote {flat}"
    return flat


@pytest.fixture(scope="session")
def loaded_archive(workdir):
    """The control: a directory written by `fletch load` over the same hours, which fletch
    served before Spark archives. The same comparisons must pass on it, so a failure on a
    Spark archive is fletch's and not the harness's."""
    d = workdir / "loaded"
    d.mkdir()
    flat = _fletch_load(d, rows=20_000, file_rows=6_000, seed=3, start=START, rate=0.45)
    return Archive(f"file://{d}", "UTC", 20_000, 0, "", 0, 0.0, [(u, 0) for u in flat])


@pytest.fixture(scope="session")
def serve(pg, data, workdir):
    """serve(name, url): one fletch per archive for the whole session, started on first use."""
    servers = {}

    def get(name, url):
        if name not in servers:
            servers[name] = _start(pg, url, workdir, f"spark-{name}", require_ready=False)
        return servers[name]

    yield get
    for s in servers.values():
        stop(s)


@pytest.fixture(scope="session")
def truths(spark):
    """Truth per archive name, shared by the fixtures below (each caches its DataFrame)."""
    return {}


def _written(request, truths, name):
    a = request.getfixturevalue(f"{name}_archive")
    if name not in truths:
        truths[name] = Truth.of(request.getfixturevalue("spark"), a.url)
    return Case(name, a, truths[name], None)


def _served(request, truths, serve, name):
    w = _written(request, truths, name)
    return Case(name, w.archive, w.truth, serve(name, w.archive.url))


SPARK_ARCHIVES = ["file", "hdfs"]


@pytest.fixture(scope="session", params=SPARK_ARCHIVES)
def written(request, truths):
    """A UTC archive written by Spark (file:// and MiniDFS) and its Spark truth."""
    return _written(request, truths, request.param)


@pytest.fixture(scope="session", params=[*SPARK_ARCHIVES, "loaded"])
def case(request, truths, serve):
    """An archive, its Spark truth and a fletch serving it: the Spark archives and the control."""
    return _served(request, truths, serve, request.param)


@pytest.fixture(scope="session", params=SPARK_ARCHIVES)
def spark_case(request, truths, serve):
    """case, for what only archives written by Spark have (event_time, partition columns)."""
    return _served(request, truths, serve, request.param)


@pytest.fixture(scope="session")
def kolkata_archive(spark, workdir):
    return spark_archive_at(spark, f"file://{workdir}/spark-kolkata/raw", tz="Asia/Kolkata", rows=6000, batches=4,
                            seed=5)


@pytest.fixture(scope="session")
def kolkata(request, truths, serve):
    return _served(request, truths, serve, "kolkata")


@pytest.fixture(scope="session")
def mixed(spark, serve, workdir, file_archive):
    """A directory without _spark_metadata: flat files written by `fletch load` (id, created_at,
    metadata as JSON text) beside copies of the committed hive partitions of file_archive."""
    d = workdir / "mixed"
    d.mkdir()
    flat = _fletch_load(d, rows=6000, file_rows=2000, seed=11, start=START + 600.5, rate=0.5)
    for url, _ in file_archive.files:
        rel = below(url, file_archive.url)
        # Hadoop lists file:/abs, the orphan was named file:///abs: compare the paths.
        orphan = local_path(url) == local_path(file_archive.orphan)
        if rel.startswith("_spark_metadata/") or orphan or not rel.endswith(".parquet"):
            continue
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(local_path(url), d / rel)
    return Case("mixed", None, _mixed_truth(spark, d, flat), serve("mixed", f"file://{d}"))


def _mixed_truth(spark, d, flat):
    from pyspark.sql import functions as F

    spark.sparkContext.setLogLevel("OFF")  # the expected failure below logs a long Java stack
    try:
        df = spark.read.option("mergeSchema", "true").parquet(f"file://{d}")
        df.count()
        return Truth(df)
    except Exception as e:  # noqa: BLE001 - any failure to read it whole: fall back as below
        # Spark 3.5 cannot read the mixed directory whole: schema merging fails with
        # CANNOT_MERGE_INCOMPATIBLE_DATA_TYPE "STRING" and "MAP<STRING, STRING>" (metadata is JSON
        # text in fletch's files, a MAP in Spark's). So the truth is the union of the two parts,
        # each read by Spark on its own, with the MAP rendered as JSON text by Spark's to_json
        # (api_row parses either back into the object the HTTP API returns).
        assert "MAP" in str(e) or "merge" in str(e).lower(), f"unexpected Spark error: {str(e)[:2000]}"
    finally:
        spark.sparkContext.setLogLevel("ERROR")
    cols = ["id", "timestamp", "level", "service", "host", "message", "metadata", *PARTITIONS]
    loaded = spark.read.parquet(*flat).select(*cols[:7], *[F.lit(None).cast("int").alias(p) for p in PARTITIONS])
    streamed = (spark.read.option("basePath", f"file://{d}").parquet(f"file://{d}/year=*")
                .withColumn("id", F.lit(None).cast("bigint")).withColumn("metadata", F.to_json("metadata"))
                .select(*cols))
    return Truth(loaded.unionByName(streamed))


# ---------------------------------------------------------------- helpers


def get(server, path, params=None):
    r = requests.get(server.http + path, params=params, timeout=120)
    assert r.status_code == 200, f"GET {path} {params}: HTTP {r.status_code}, expected 200: {r.text[:800]}"
    return r


def post_sql(server, sql, fmt):
    r = requests.post(server.http + "/api/sql", json={"sql": sql, "format": fmt}, timeout=120)
    assert r.status_code == 200, f"POST /api/sql {sql!r}: HTTP {r.status_code}, expected 200: {r.text[:800]}"
    return r


def sql_arrow(server, sql):
    return pa.ipc.open_stream(post_sql(server, sql, "arrow").content).read_all()


def normalize(row, text_metadata):
    """A row from JSON, CSV or Arrow as the HTTP API's JSON row. In JSON, metadata must already
    be an object; CSV and Arrow (text_metadata) may carry it as JSON text."""
    out = {k: row.get(k) for k in ROW_KEYS}
    meta = out["metadata"]
    if isinstance(meta, str) and text_metadata:
        meta = json.loads(meta) if meta else None
    elif isinstance(meta, list):  # an Arrow MAP converts to a list of (key, value)
        meta = dict(meta)
    out["metadata"] = meta
    if isinstance(out["timestamp"], str):
        out["timestamp"] = float(out["timestamp"])
    if out["id"] in ("", None):
        out["id"] = None
    elif isinstance(out["id"], str):
        out["id"] = int(out["id"])
    for k in ("level", "service", "host", "message"):
        if out[k] == "":  # CSV has no NULL but an empty field
            out[k] = None
    return out


def check_rows(what, got, want, text_metadata=False):
    """got: rows as served; want: Truth rows. Says which row differs and how."""
    missing = [k for k in (*ROW_KEYS, "created_at") if got and k not in got[0]]
    assert not missing, f"{what}: rows lack {missing}: {got[0]}"
    orphans = sum(1 for r in got if r.get("message") == ORPHAN_MESSAGE)
    assert orphans == 0, f"{what}: {orphans} rows of the orphan file (not in _spark_metadata) were served"
    for r in got:
        assert (r.get("created_at") is None or r.get("created_at") == "") == (r.get("id") in (None, "")), (
            f"{what}: created_at must be null exactly when id is (rows written by Spark have neither): {r}")
    rows = [normalize(r, text_metadata) for r in got]
    for i, (g, w) in enumerate(zip(rows, want)):
        assert g == w, f"{what}: row {i} of {len(want)} differs:\n  got      {g}\n  expected {w}"
    assert len(rows) == len(want), (f"{what}: {len(rows)} rows, expected {len(want)}; "
                                    f"first extra/missing: {(rows[len(want):] or want[len(rows):])[:1]}")


def params(name, **extra):
    return {**{k: repr(v) if isinstance(v, float) else v for k, v in FILTERS[name].items()}, **extra}


def sql_where(name):
    f = FILTERS[name]
    terms = [f"{k} = '{f[k]}'" for k in ("level", "service", "host") if k in f]
    if "start_time" in f:
        terms.append(f'"timestamp" >= {f["start_time"]!r}')
    if "end_time" in f:
        terms.append(f'"timestamp" <= {f["end_time"]!r}')
    return " WHERE " + " AND ".join(terms) if terms else ""


def epoch_micros(column):
    """An Arrow timestamp column (any unit, with or without a zone) as UTC epoch microseconds."""
    assert pa.types.is_timestamp(column.type), f"event_time is {column.type}, expected a timestamp"
    return column.cast(pa.timestamp("us", tz=column.type.tz)).cast(pa.int64()).to_pylist()


# ---------------------------------------------------------------- the archive itself (no fletch)


def test_archive_is_what_the_pipeline_writes(written):
    a, t = written.archive, written.truth
    rels = [below(u, a.url) for u, _ in a.files]
    log = [r for r in rels if r.startswith("_spark_metadata/")]
    assert any(r.endswith(".compact") for r in log) and any(r.split("/")[1].isdigit() for r in log), log
    assert a.batches >= 6, f"{a.batches} micro-batches"
    orphan = below(a.orphan, a.url)
    committed = {below(u, a.url) for u in t.files()}
    assert orphan in rels and committed == {r for r in rels if r.endswith(".parquet")} - {orphan}
    assert t.count() == a.rows, "Spark must not read the orphan file"
    days = {r.split("/")[2] for r in rels if r.startswith("year=")}
    hours = {"/".join(r.split("/")[:4]) for r in rels if r.startswith("year=")}
    assert len(days) >= 2 and len(hours) >= 10, (days, hours)
    assert t.count(FILTERS["boundary_row"]) == 1 and t.count(FILTERS["before_boundary"]) == 1
    assert {k for k, _ in t.groups("host")} == {"worker-1", "worker-2", "worker-3", "null"}


def test_kolkata_partitions_are_local_hours(request, truths):
    from pyspark.sql import functions as F

    df = _written(request, truths, "kolkata").truth.df
    got = {tuple(r) for r in df.filter(F.col("timestamp") == BOUNDARY).select(*PARTITIONS).collect()}
    assert got == {(2026, 1, 12, 9)}, "04:00 UTC is 09:30 in Asia/Kolkata"
    assert df.select("day").distinct().count() >= 2


# ---------------------------------------------------------------- HTTP


def test_ready(case):
    r = requests.get(case.server.http + "/ready", timeout=30)
    assert r.status_code == 200, f"/ready: HTTP {r.status_code}, expected 200: {r.text[:800]}"
    hdfs = r.json().get("sources", {}).get("hdfs")
    assert hdfs and hdfs.get("ready") is True, f"/ready does not report the archive as ready: {r.text[:800]}"
    detail = hdfs.get("detail") or {}
    if "rows" in detail:
        assert detail["rows"] == case.truth.count(), f"/ready rows {detail['rows']}, Spark reads {case.truth.count()}"
    if "files" in detail:
        assert detail["files"] == len(case.truth.files()), (
            f"/ready files {detail['files']}, _spark_metadata lists {len(case.truth.files())}")


@pytest.mark.parametrize("order", ["desc", "asc"])
@pytest.mark.parametrize("name", FILTERS)
def test_logs_page(case, name, order):
    p = params(name, order_by="timestamp", order_dir=order, limit=100, count="exact")
    body = get(case.server, LOGS, p).json()
    want_total = case.truth.count(FILTERS[name])
    check_rows(f"{LOGS} {p}", body["data"], case.truth.rows(FILTERS[name], order, limit=100))
    assert body["total_count"] == want_total, f"{LOGS} {p}: total_count {body['total_count']}, Spark counts {want_total}"
    assert body["returned_count"] == min(100, want_total)


# Offsets past whole runs of overlapping files (see test_deep_pages_count_runs_of_overlapping_files).
DEEP_PAGES = [
    ("all", "asc", 20_000, 100),
    ("level", "asc", 1_200, 50),
    ("host", "desc", 6_000, 100),
    ("window_labels", "asc", 1_900, 20),
]


@pytest.mark.parametrize("name,order,offset,limit", [
    ("all", "desc", 250, 100),
    ("all", "asc", 12_345, 50),
    ("all", "desc", 15_000, 100),  # past 10,000: the unfiltered deep-page path
    ("level", "desc", 40, 100),
    ("window", "asc", 1_000, 200),
    ("newest", "desc", 300, 100),
    *DEEP_PAGES,
])
def test_logs_offset_pages(case, name, order, offset, limit):
    p = params(name, order_by="timestamp", order_dir=order, limit=limit, offset=offset)
    body = get(case.server, LOGS, p).json()
    check_rows(f"{LOGS} {p}", body["data"], case.truth.rows(FILTERS[name], order, limit=limit, offset=offset))


def metrics(server, *names):
    text = requests.get(server.http + "/metrics", timeout=10).text
    values = dict(line.split()[:2] for line in text.splitlines() if line and not line.startswith("#"))
    return [float(values[n]) for n in names]


@pytest.fixture(scope="session")
def files_only(spark_case, pg, workdir):
    """spark_case served without a copy of the newest rows, so that every page reads the files,
    once every file has its rollup."""
    server = _start(pg, spark_case.archive.url, workdir, f"files-only-{spark_case.name}",
                    ["--set", "parquet.newest_rows=0"])
    try:
        _wait_for_rollups(server)
        yield Case(spark_case.name, spark_case.archive, spark_case.truth, server)
    finally:
        stop(server)


@pytest.mark.parametrize("name,order,offset,limit", DEEP_PAGES)
def test_deep_pages_count_runs_of_overlapping_files(files_only, name, order, offset, limit):
    """Each hour partition holds writer files spanning the same minutes, so no file can be
    skipped alone; an offset passes over whole runs of them by their row or rollup counts and
    reads only the run the page starts in, not every row before it."""
    case, f = files_only, FILTERS[name]
    names = ("fletch_hdfs_run_skips_total", "fletch_hdfs_rows_scanned_total")
    skips, scanned = metrics(case.server, *names)
    p = params(name, order_by="timestamp", order_dir=order, limit=limit, offset=offset, count="none")
    want = case.truth.rows(f, order, limit=limit, offset=offset)
    check_rows(f"{LOGS} {p}", get(case.server, LOGS, p).json()["data"], want)
    skips_after, scanned_after = metrics(case.server, *names)
    assert skips_after == skips + 1, f"{LOGS} {p}: the page did not pass over runs by counting"
    # Rows of the archive from the filter's time bound up to the page: what reading up to it scans.
    first = want[0]["timestamp"]
    before = case.truth.count({"start_time": f.get("start_time"), "end_time": first - 0.0005} if order == "asc"
                              else {"start_time": first + 0.0005, "end_time": f.get("end_time")})
    print(f"\n{case.name} {name} {order} offset {offset}: {scanned_after - scanned:.0f} rows scanned, "
          f"{before} before the page")
    assert scanned_after - scanned < before / 2, (
        f"{LOGS} {p}: scanned {scanned_after - scanned:.0f} rows; {before} rows lie before the page")


# Pages of newest rows against a copy of the newest rows (parquet.newest_rows): every filter,
# plus pages deeper in, one of them past a 4,000-row copy.
NEWEST_PAGES = [(name, 0, 100) for name in FILTERS] + [("all", 2_900, 100), ("level", 150, 100),
                                                      ("all", 3_950, 100), ("newest", 40, 60)]


def _newest_pages_served(server):
    text = requests.get(server.http + "/metrics", timeout=10).text
    line = next(line for line in text.splitlines() if line.startswith("fletch_hdfs_newest_pages_total "))
    return int(line.split()[1])


@pytest.mark.parametrize("held", [4_000, None], ids=["part", "whole"])
def test_logs_pages_from_the_newest_rows(request, case, pg, workdir, held):
    """Held is part of the archive (a filter too selective for it, or a page deeper than it,
    reads the files) or all of it (every page is cut from the copy). Either way each page is
    Spark's, and the copy must have served pages."""
    extra = ["--set", "cache.ttl_ms=0"] + (["--set", f"parquet.newest_rows={held}"] if held else [])
    server = _start(pg, case.archive.url, workdir, f"newest-{case.name}-{request.node.callspec.id}", extra,
                    require_ready=False)
    try:
        get(server, LOGS, {"limit": "1", "count": "none"})  # starts reading the copy
        deadline, ready = time.time() + 60, {}
        while time.time() < deadline:
            ready = requests.get(server.http + "/ready", timeout=10).json()["sources"]["hdfs"]["detail"]
            if ready.get("newest_rows", {}).get("generation") == ready.get("generation"):
                break
            time.sleep(0.2)
        copy = ready.get("newest_rows", {})
        assert copy.get("generation") == ready.get("generation"), f"the newest rows were not read in 60 s: {ready}"
        assert copy["whole_archive"] == (held is None), f"copy of {held} rows of {case.truth.count()}: {copy}"
        before = _newest_pages_served(server)
        for name, offset, limit in NEWEST_PAGES:
            p = params(name, order_by="timestamp", order_dir="desc", limit=limit, offset=offset, count="none")
            body = get(server, LOGS, p).json()
            check_rows(f"{LOGS} {p}", body["data"], case.truth.rows(FILTERS[name], "desc", limit=limit, offset=offset))
        served = _newest_pages_served(server) - before
        if held is None:
            assert served == len(NEWEST_PAGES), f"{served} of {len(NEWEST_PAGES)} pages cut from the whole archive"
        else:
            assert 0 < served < len(NEWEST_PAGES), f"{served} of {len(NEWEST_PAGES)} pages cut from {held} rows"
    finally:
        stop(server)


@pytest.mark.parametrize("group_by", ["level", "service", "host"])
@pytest.mark.parametrize("name", AGG_FILTERS)
def test_aggregate(case, name, group_by):
    p = params(name, group_by=group_by)
    got = get(case.server, LOGS + "/aggregate", p).json()["data"]
    want = [{"key": k, "count": n} for k, n in case.truth.groups(group_by, FILTERS[name])]
    assert got == want, f"{LOGS}/aggregate {p}:\n  got      {got}\n  expected {want}"


def _wait_for_rollups(server, timeout=120):
    """Until /ready says every file has its label rollup (they are built in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        layouts = requests.get(server.http + "/ready", timeout=30).json()["sources"]["hdfs"]["detail"]["layouts"]
        if all(lay["fast_paths"]["label_rollups"] == lay["files"] for lay in layouts):
            return
        if time.monotonic() > deadline:
            pytest.fail(f"rollups not built for every file within {timeout} s: {layouts}")
        time.sleep(0.2)


@pytest.mark.parametrize("group_by", ["level", "service", "host"])
@pytest.mark.parametrize("name", AGG_FILTERS)
def test_aggregate_from_rollups(case, name, group_by):
    """The same answers once every file has its rollup: whole partition directories and the
    whole archive are then answered from merged rollups, straddling files by a scan."""
    _wait_for_rollups(case.server)
    p = params(name, group_by=group_by)
    got = get(case.server, LOGS + "/aggregate", p).json()["data"]
    want = [{"key": k, "count": n} for k, n in case.truth.groups(group_by, FILTERS[name])]
    assert got == want, f"{LOGS}/aggregate {p}:\n  got      {got}\n  expected {want}"
    p = params(name, limit=1, count="exact")
    total = get(case.server, LOGS, p).json()["total_count"]
    assert total == case.truth.count(FILTERS[name]), f"{LOGS} {p}: total_count {total}"


def test_stats(case):
    body = get(case.server, "/api/query/hdfs/stats").json()
    want = case.truth.count()
    assert body["logs_count"] == want, (
        f"/stats logs_count {body['logs_count']}, Spark counts {want} (the orphan file has "
        f"{case.archive.orphan_rows} rows: {want + case.archive.orphan_rows} means it was counted)")
    assert body["files"] == len(case.truth.files()), (
        f"/stats files {body['files']}, _spark_metadata lists {len(case.truth.files())} (orphan not among them)")


@pytest.mark.parametrize("name", EXPORT_FILTERS)
def test_export_ndjson(case, name):
    p = params(name, order_by="timestamp", order_dir="asc", format="ndjson")
    r = get(case.server, LOGS + "/export", p)
    rows = [json.loads(line) for line in r.text.splitlines() if line]
    check_rows(f"{LOGS}/export {p}", rows, case.truth.rows(FILTERS[name], "asc"))


@pytest.mark.parametrize("name", EXPORT_FILTERS)
def test_export_csv(case, name):
    p = params(name, order_by="timestamp", order_dir="asc", format="csv")
    r = get(case.server, LOGS + "/export", p)
    rows = list(csv.DictReader(io.StringIO(r.text)))
    check_rows(f"{LOGS}/export {p}", rows, case.truth.rows(FILTERS[name], "asc"), text_metadata=True)


@pytest.mark.parametrize("name", EXPORT_FILTERS)
def test_export_arrow(case, name):
    p = params(name, order_by="timestamp", order_dir="desc", format="arrow")
    r = get(case.server, LOGS + "/export", p)
    table = pa.ipc.open_stream(r.content).read_all()
    check_rows(f"{LOGS}/export {p}", table.to_pylist(), case.truth.rows(FILTERS[name], "desc"), text_metadata=True)


@pytest.mark.parametrize("p", [{}, {"level": "ERROR", "limit": "10"}, {"service": "user-service", "limit": "500"},
                               {"level": "WARN", "service": "api-gateway", "limit": "10000"}])
def test_compare(case, pg, p):
    body = get(case.server, "/api/query/compare", p).json()
    f = {k: v for k, v in p.items() if k != "limit"}
    want = case.truth.count(f)
    assert body["hdfs"] == {"count": min(int(p.get("limit", 100)), want), "total": want}, (
        f"/api/query/compare {p}: hdfs {body['hdfs']}, Spark counts {want}")
    where = " AND ".join(f"{k} = '{v}'" for k, v in f.items())
    pg_total = pg.scalar("SELECT count(*) FROM logs" + (f" WHERE {where}" if where else ""))
    assert body["postgresql"]["total"] == pg_total


# ---------------------------------------------------------------- SQL over HTTP and Flight SQL


@pytest.mark.parametrize("name", ["all", "labels", "window", "newest", *BOUNDARY_FILTERS])
def test_sql_count(case, name):
    sql = "SELECT count(*) AS n FROM hdfs.logs" + sql_where(name)
    rows = [json.loads(line) for line in post_sql(case.server, sql, "ndjson").text.splitlines() if line]
    want = case.truth.count(FILTERS[name])
    assert rows == [{"n": want}], f"POST /api/sql {sql!r}: {rows}, Spark counts {want}"


@pytest.mark.parametrize("group_by", ["level", "service", "host"])
def test_sql_group_by(case, group_by):
    sql = f"SELECT {group_by}, count(*) AS n FROM hdfs.logs GROUP BY {group_by}"
    t = sql_arrow(case.server, sql)
    got = sorted(("null" if k is None else k, n) for k, n in zip(t.column(group_by).to_pylist(), t.column("n").to_pylist()))
    want = sorted(case.truth.groups(group_by))
    assert got == want, f"POST /api/sql {sql!r}:\n  got      {got}\n  expected {want}"


def _check_extra_columns(what, table, truth):
    assert {"event_time", *PARTITIONS} <= set(table.schema.names), f"{what}: columns {table.schema.names}"
    want = truth.newest_extra(5)
    got = [{"event_time_us": us, **{p: table.column(p)[i].as_py() for p in PARTITIONS}}
           for i, us in enumerate(epoch_micros(table.column("event_time")))]
    assert got == want, f"{what}:\n  got      {got}\n  expected {want}"


def test_sql_extra_columns_are_visible(spark_case):
    table = sql_arrow(spark_case.server, EXTRA_COLUMNS_SQL)
    _check_extra_columns(f"POST /api/sql {EXTRA_COLUMNS_SQL!r}", table, spark_case.truth)


def test_flight_sql(case):
    def run(cur, sql):
        cur.execute(sql)
        return cur.fetchall()

    with flightsql.connect(case.server.grpc, autocommit=True) as conn, conn.cursor() as cur:
        for name in ("all", "to_boundary"):
            sql = "SELECT count(*) AS n FROM hdfs.logs" + sql_where(name)
            got, want = run(cur, sql), [(case.truth.count(FILTERS[name]),)]
            assert got == want, f"Flight SQL {sql!r}: {got}, Spark counts {want}"
        sql = "SELECT service, count(*) AS n FROM hdfs.logs GROUP BY service"
        got, want = sorted(run(cur, sql)), sorted(case.truth.groups("service"))
        assert got == want, f"Flight SQL {sql!r}:\n  got      {got}\n  expected {want}"


def test_flight_sql_extra_columns_are_visible(spark_case):
    with flightsql.connect(spark_case.server.grpc, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(EXTRA_COLUMNS_SQL)
        _check_extra_columns(f"Flight SQL {EXTRA_COLUMNS_SQL!r}", cur.fetch_arrow_table(), spark_case.truth)


def test_plain_flight_do_get(case):
    c = flight.connect(case.server.grpc)
    try:
        info = c.get_flight_info(flight.FlightDescriptor.for_path("hdfs.logs"))
        table = c.do_get(info.endpoints[0].ticket).read_all()
        assert table.num_rows == case.truth.count(), (
            f"Flight do_get hdfs.logs: {table.num_rows} rows, Spark reads {case.truth.count()}")
        ticket = flight.Ticket(json.dumps({"source": "hdfs", "kind": "aggregate", "params": {"group_by": "host"}}))
        t = c.do_get(ticket).read_all()
        got = list(zip(t.column("key").to_pylist(), t.column("count").to_pylist()))
        want = case.truth.groups("host")
        assert got == want, f"Flight aggregate ticket by host:\n  got      {got}\n  expected {want}"
    finally:
        c.close()


# ---------------------------------------------------------------- Asia/Kolkata partitions


@pytest.mark.parametrize("name", [*BOUNDARY_FILTERS, "window", "newest", "oldest"])
def test_kolkata_time_windows(kolkata, name):
    f = FILTERS[name]
    p = params(name, count="exact", limit=100)
    body = get(kolkata.server, LOGS, p).json()
    want = kolkata.truth.count(f)
    assert body["total_count"] == want, f"{LOGS} {p}: total_count {body['total_count']}, Spark counts {want}"
    check_rows(f"{LOGS} {p}", body["data"], kolkata.truth.rows(f, "desc", limit=100))
    agg = get(kolkata.server, LOGS + "/aggregate", params(name, group_by="level")).json()["data"]
    assert agg == [{"key": k, "count": n} for k, n in kolkata.truth.groups("level", f)], f"aggregate {p}: {agg}"
    t = sql_arrow(kolkata.server, "SELECT count(*) AS n FROM hdfs.logs" + sql_where(name))
    assert t.column("n").to_pylist() == [want], f"SQL count {sql_where(name)}: {t.column('n').to_pylist()}"


def test_kolkata_sql_sees_local_partition_hours(kolkata):
    sql = f'SELECT year, month, day, hour FROM hdfs.logs WHERE "timestamp" = {BOUNDARY!r}'
    t = sql_arrow(kolkata.server, sql)
    assert t.to_pylist() == [{"year": 2026, "month": 1, "day": 12, "hour": 9}], f"POST /api/sql {sql!r}: {t.to_pylist()}"


# ---------------------------------------------------------------- mixed directory


def test_mixed_archive_counts(mixed):
    body = get(mixed.server, "/api/query/hdfs/stats").json()
    assert body["logs_count"] == mixed.truth.count(), f"/stats {body}, Spark counts {mixed.truth.count()}"
    for group_by in ("level", "service", "host"):
        for name in ("all", "window", "to_boundary"):
            p = params(name, group_by=group_by)
            got = get(mixed.server, LOGS + "/aggregate", p).json()["data"]
            want = [{"key": k, "count": n} for k, n in mixed.truth.groups(group_by, FILTERS[name])]
            assert got == want, f"mixed {LOGS}/aggregate {p}:\n  got      {got}\n  expected {want}"
    t = sql_arrow(mixed.server, "SELECT count(*) AS n FROM hdfs.logs")
    assert t.column("n").to_pylist() == [mixed.truth.count()]


@pytest.mark.parametrize("order", ["desc", "asc"])
@pytest.mark.parametrize("name", ["all", "window", "labels", "oldest"])
def test_mixed_archive_pages(mixed, name, order):
    p = params(name, order_by="timestamp", order_dir=order, limit=200, count="exact")
    body = get(mixed.server, LOGS, p).json()
    check_rows(f"mixed {LOGS} {p}", body["data"], mixed.truth.rows(FILTERS[name], order, limit=200))
    assert body["total_count"] == mixed.truth.count(FILTERS[name])


def test_mixed_archive_export(mixed):
    p = {"order_by": "timestamp", "order_dir": "asc", "format": "ndjson"}
    rows = [json.loads(line) for line in get(mixed.server, LOGS + "/export", p).text.splitlines() if line]
    check_rows(f"mixed {LOGS}/export {p}", rows, mixed.truth.rows({}, "asc"))
