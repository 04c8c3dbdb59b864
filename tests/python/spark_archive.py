"""A Parquet archive written the way the log pipeline's Spark Structured Streaming job writes
it, and ground truth about it computed by Spark itself (never by fletch's code).

The pipeline's writer (../shared/DESIGN.md, "The data as the pipeline really writes it"):
readStream JSON with SCHEMA -> `event_time` = the `timestamp` epoch seconds cast to a
timestamp -> `year`, `month`, `day`, `hour` of `event_time` in the session time zone ->
writeStream parquet partitioned by year/month/day/hour, with a checkpoint.

Here the stream reads JSON files from a local staging directory, one file per micro-batch
(maxFilesPerTrigger=1, trigger availableNow), and the file sink's log is compacted every
COMPACT_INTERVAL batches, so `_spark_metadata/` holds an `N.compact` file beside plain batch
files. Rows arrive roughly in time order, a few late; within a batch they are shuffled (no
declared sort order). One more Parquet file, written by the same Spark in the same layout, is
then put into the newest hour partition without being listed in `_spark_metadata`: what a
failed micro-batch leaves behind. Spark's readers ignore it, and so must fletch.

Every timestamp is a distinct whole millisecond, so "newest first" and offset pages have one
right answer.

    python spark_archive.py file:///tmp/archive [UTC|Asia/Kolkata]   # write one and describe it
"""

import datetime
import json
import random
import shutil
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

SCHEMA = ("`timestamp` DOUBLE, level STRING, service STRING, host STRING, message STRING, "
          "metadata MAP<STRING, STRING>")
PARTITIONS = ("year", "month", "day", "hour")
COMPACT_INTERVAL = 3
# Arrow's off-heap memory (pyspark's Arrow paths, the Flight SQL JDBC driver) needs java.nio
# opened on Java 17.
JAVA_OPTS = "--add-opens=java.base/java.nio=ALL-UNNAMED -Dio.netty.tryReflectionSetAccessible=true"

LEVELS = ["INFO", "DEBUG", "WARN", "ERROR"]
LEVEL_WEIGHTS = [60, 20, 15, 5]
SERVICES = ["api-gateway", "user-service", "order-service", "payment-service"]
HOSTS = ["worker-1", "worker-2", "worker-3"]
ENDPOINTS = ["/api/v1/users", "/api/v1/orders", "/api/v1/payments", "/api/v1/login", "/health"]
METHODS = ["GET", "POST", "PUT", "DELETE"]
MESSAGES = {
    "INFO": ["Request processed successfully", "User logged in", "Order created", "Payment accepted"],
    "DEBUG": ["Entering handler", "Cache lookup", "Parsed request body", "Retry scheduled"],
    "WARN": ["Slow response detected", "Retrying request", "Rate limit approaching", "Fallback used"],
    "ERROR": ["Database connection failed", "Payment gateway timeout", "Unhandled exception",
              "Transaction rolled back"],
}
STATUS = {"INFO": ["200", "201"], "DEBUG": ["200", "204"], "WARN": ["400", "404", "429"],
          "ERROR": ["500", "502", "503"]}


def epoch(iso):
    """Epoch seconds of an ISO-8601 UTC time, e.g. epoch("2026-01-12T04:00:00")."""
    return datetime.datetime.fromisoformat(iso).replace(tzinfo=datetime.timezone.utc).timestamp()


# Committed rows span two UTC days (and two Asia/Kolkata days: its midnight is 18:30 UTC).
START = epoch("2026-01-11T17:00:00")
END = epoch("2026-01-12T05:40:00")
# A row exactly on an hour boundary, and one 1 ms before it (both always present).
BOUNDARY = epoch("2026-01-12T04:00:00")
BEFORE_BOUNDARY = round(BOUNDARY - 0.001, 3)
# The orphan's rows are newer than every committed row but in the same (newest) hour partition
# in UTC and in Asia/Kolkata, so a reader that counts them shows them first.
ORPHAN_START = END
ORPHAN_END = epoch("2026-01-12T05:50:00")
ORPHAN_MESSAGE = "orphan row of a failed micro-batch: must never be served"


def spark_session(jars=()):
    """local[2] Spark, quick to start, UI off, session time zone UTC (writers set their own)."""
    from pyspark.sql import SparkSession

    b = (
        SparkSession.builder.master("local[2]")
        .appName("fletch-pytest-spark")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.streaming.fileSink.log.compactInterval", str(COMPACT_INTERVAL))
        .config("spark.driver.extraJavaOptions", JAVA_OPTS)
        .config("spark.executor.extraJavaOptions", JAVA_OPTS)
    )
    if jars:
        b = b.config("spark.jars", ",".join(jars))
    s = b.getOrCreate()
    s.sparkContext.setLogLevel("ERROR")
    return s


def _row(rng, ts, level=None, message=None):
    level = level or rng.choices(LEVELS, LEVEL_WEIGHTS)[0]
    return {
        "timestamp": ts,
        "level": level,
        "service": rng.choice(SERVICES),
        "host": rng.choice(HOSTS),
        "message": message or rng.choice(MESSAGES[level]),
        "metadata": {
            "request_id": f"req-{rng.getrandbits(48):012x}",
            "response_time_ms": str(rng.randint(1, 3000)),
            "status_code": rng.choice(STATUS[level]),
            "endpoint": rng.choice(ENDPOINTS),
            "method": rng.choice(METHODS),
        },
    }


def _timestamps(rng, n, start, end, must=()):
    """n distinct whole-millisecond epoch seconds in [start, end), including `must`."""
    lo, hi = round(start * 1000), round(end * 1000)
    ms = set(round(t * 1000) for t in must)
    while len(ms) < n:
        ms.update(rng.sample(range(lo, hi), n - len(ms)))
    return sorted(m / 1000 for m in ms)


def generate(rows, seed):
    """(committed batches, orphan rows): rows as dicts in SCHEMA's shape."""
    rng = random.Random(seed)
    data = [_row(rng, ts) for ts in _timestamps(rng, rows, START, END, (BOUNDARY, BEFORE_BOUNDARY))]
    # A few rows without a host and a few without metadata (some without either).
    for i in rng.sample(range(rows), 30):
        data[i]["host"] = None
    for i in rng.sample(range(rows), 30):
        data[i]["metadata"] = None
    orphan = [_row(rng, ts, message=ORPHAN_MESSAGE)
              for ts in _timestamps(rng, max(rows // 40, 50), ORPHAN_START, ORPHAN_END)]
    return data, orphan


def _batches(rng, data, n):
    """Time-ordered chunks, a few rows of the first arriving late in the last, each shuffled."""
    size = -(-len(data) // n)
    chunks = [data[i * size:(i + 1) * size] for i in range(n)]
    late = set(rng.sample(range(len(chunks[0])), min(40, len(chunks[0]) // 10)))
    chunks[-1] += [r for i, r in enumerate(chunks[0]) if i in late]
    chunks[0] = [r for i, r in enumerate(chunks[0]) if i not in late]
    for c in chunks:
        rng.shuffle(c)
    return chunks


def with_partitions(df):
    """The pipeline's columns after parsing: event_time and its year/month/day/hour."""
    from pyspark.sql import functions as F

    df = df.withColumn("event_time", F.col("timestamp").cast("timestamp"))
    return (df.withColumn("year", F.year("event_time")).withColumn("month", F.month("event_time"))
            .withColumn("day", F.dayofmonth("event_time")).withColumn("hour", F.hour("event_time")))


class HadoopFs:
    """Hadoop's FileSystem (through Spark's JVM) for file:// and hdfs:// alike."""

    def __init__(self, spark, url):
        self.jvm = spark._jvm
        self.conf = spark._jsc.hadoopConfiguration()
        self.fs = self.path(url).getFileSystem(self.conf)

    def path(self, url):
        return self.jvm.org.apache.hadoop.fs.Path(url)

    def files(self, url):
        """Every file below url: (full URL, size), sorted."""
        it = self.fs.listFiles(self.path(url), True)
        out = []
        while it.hasNext():
            st = it.next()
            out.append((st.getPath().toString(), st.getLen()))
        return sorted(out)

    def read(self, url):
        stream = self.fs.open(self.path(url))
        try:
            return bytes(self.jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
        finally:
            stream.close()

    def rename(self, src, dst):
        if not self.fs.rename(self.path(src), self.path(dst)):
            raise RuntimeError(f"rename {src} -> {dst} failed")

    def delete(self, url):
        self.fs.delete(self.path(url), True)


def below(url, base):
    """url's path relative to the directory base (Hadoop writes file:/x where base says file:///x)."""
    root = urllib.parse.urlparse(base).path.rstrip("/") + "/"
    path = urllib.parse.urlparse(url).path
    if not path.startswith(root):
        raise ValueError(f"{url} is not below {base}")
    return path[len(root):]


@dataclass
class Archive:
    url: str  # the output directory: file:///... or hdfs://host:port/...
    tz: str  # spark.sql.session.timeZone the partition columns were computed in
    rows: int  # committed rows
    batches: int
    orphan: str  # URL of the orphan file (not in _spark_metadata)
    orphan_rows: int
    seconds: float  # how long writing took
    files: list = field(default_factory=list)  # (URL, size) of every file below url

    def relative(self, url):
        return below(url, self.url)


def write_archive(spark, url, *, tz="UTC", rows=30_000, batches=7, seed=1, orphan=True):
    """Writes a streaming archive to `url` (must not exist yet) and returns its Archive."""
    t0 = time.time()
    url = url.rstrip("/")
    rng = random.Random(seed + 1)
    data, orphan_rows = generate(rows, seed)
    work = Path(tempfile.mkdtemp(prefix="fletch-spark-stage-"))
    try:
        staging = work / "staging"
        staging.mkdir()
        for i, chunk in enumerate(_batches(rng, data, batches)):
            # Written under another name first: the file source must never see a partial file.
            tmp = work / f"batch-{i:03}.json"
            tmp.write_text("".join(json.dumps(r) + "\n" for r in chunk))
            tmp.rename(staging / tmp.name)
        old_tz = spark.conf.get("spark.sql.session.timeZone")
        spark.conf.set("spark.sql.session.timeZone", tz)
        try:
            src = spark.readStream.schema(SCHEMA).option("maxFilesPerTrigger", 1).json(f"file://{staging}")
            q = (with_partitions(src).writeStream.format("parquet").partitionBy(*PARTITIONS)
                 .option("checkpointLocation", f"file://{work / 'checkpoint'}").option("path", url)
                 .trigger(availableNow=True).start())
            q.awaitTermination()
            if q.exception() is not None:
                raise RuntimeError(f"streaming write to {url} failed: {q.exception()}")
            done = q.lastProgress["batchId"] + 1 if q.lastProgress else 0
            orphan_url = _write_orphan(spark, url, orphan_rows) if orphan else ""
        finally:
            spark.conf.set("spark.sql.session.timeZone", old_tz)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    files = HadoopFs(spark, url).files(url)
    return Archive(url, tz, len(data), done, orphan_url, len(orphan_rows) if orphan else 0,
                   time.time() - t0, files)


def _write_orphan(spark, url, rows):
    """Writes `rows` as one Parquet file in url's layout and moves it into its hour partition,
    leaving `_spark_metadata` alone. Returns the file's URL."""
    tmp = url + "-orphan-tmp"
    df = spark.createDataFrame([tuple(r[c] for c in ("timestamp", "level", "service", "host", "message",
                                                     "metadata")) for r in rows], SCHEMA)
    with_partitions(df).coalesce(1).write.partitionBy(*PARTITIONS).parquet(tmp)
    fs = HadoopFs(spark, url)
    parts = [u for u, _ in fs.files(tmp) if u.endswith(".parquet")]
    if len(parts) != 1:
        raise RuntimeError(f"orphan write produced {parts}, expected one file")
    rel = below(parts[0], tmp)
    target = f"{url}/{rel}"
    if not fs.fs.exists(fs.path(target.rsplit("/", 1)[0])):
        raise RuntimeError(f"orphan partition {rel} is not one the stream wrote")
    fs.rename(parts[0], target)
    fs.delete(tmp)
    return target


def _where(df, filters):
    from pyspark.sql import functions as F

    for col in ("level", "service", "host"):
        if filters.get(col) is not None:
            df = df.filter(F.col(col) == filters[col])
    if filters.get("start_time") is not None:
        df = df.filter(F.col("timestamp") >= float(filters["start_time"]))
    if filters.get("end_time") is not None:
        df = df.filter(F.col("timestamp") <= float(filters["end_time"]))
    return df


def api_row(r):
    """A Spark Row as the HTTP API's JSON row, without created_at (id None where there is none)."""
    d = r.asDict()
    meta = d["metadata"]
    if isinstance(meta, str):  # JSON text: fletch's own files, or a MAP through to_json
        meta = json.loads(meta)
    return {"id": d.get("id"), "timestamp": d["timestamp"], "level": d["level"], "service": d["service"],
            "host": d["host"], "message": d["message"], "metadata": meta}


class Truth:
    """Answers computed by Spark over a DataFrame of the archive; memoized."""

    def __init__(self, df):
        # inputFiles() of a cached plan is empty: ask before caching.
        self._memo = {("files",): sorted(df.inputFiles())}
        self.df = df.cache()

    @classmethod
    def of(cls, spark, url):
        # spark.read.parquet of a streaming sink's directory lists files from _spark_metadata.
        return cls(spark.read.parquet(url))

    def _once(self, key, fn):
        if key not in self._memo:
            self._memo[key] = fn()
        return self._memo[key]

    @staticmethod
    def _key(name, filters, *rest):
        return (name, tuple(sorted((k, v) for k, v in filters.items() if v is not None)), *rest)

    def count(self, filters=None):
        filters = filters or {}
        return self._once(self._key("count", filters), lambda: _where(self.df, filters).count())

    def groups(self, group_by, filters=None):
        """[(key, count)] sorted count desc, then key (byte order); NULL labels as "null"."""
        filters = filters or {}

        def run():
            got = _where(self.df, filters).groupBy(group_by).count().collect()
            pairs = [("null" if r[group_by] is None else r[group_by], r["count"]) for r in got]
            return sorted(pairs, key=lambda p: (-p[1], p[0].encode()))

        return self._once(self._key("groups", filters, group_by), run)

    def rows(self, filters=None, order="desc", limit=None, offset=0):
        """API rows ordered by timestamp; limit None = all."""
        from pyspark.sql import functions as F

        filters = filters or {}

        def run():
            df = _where(self.df, filters).orderBy(F.col("timestamp").desc() if order == "desc" else "timestamp")
            if limit is not None:
                df = df.limit(offset + limit)
            return [api_row(r) for r in df.collect()[offset:]]

        return self._once(self._key("rows", filters, order, limit, offset), run)

    def newest_extra(self, n):
        """The extra columns of the n newest rows: event_time as epoch microseconds."""
        from pyspark.sql import functions as F

        def run():
            df = self.df.orderBy(F.col("timestamp").desc()).limit(n)
            cols = [F.unix_micros("event_time").alias("event_time_us"), *PARTITIONS]
            return [r.asDict() for r in df.select(*cols).collect()]

        return self._once(("extra", n), run)

    def files(self):
        """The data files a Spark reader reads (for a sink: those listed in _spark_metadata)."""
        return self._memo[("files",)]


def local_path(url):
    """/abs/path of a file: URL (Hadoop prints file:/abs, others file:///abs)."""
    return "/" + url[len("file:"):].lstrip("/")


def parquet_schema(local_file):
    """The physical Parquet schema of one local file, as pyarrow prints it."""
    import pyarrow.parquet as pq

    return str(pq.ParquetFile(local_file).schema)


def main(argv):
    url = argv[1] if len(argv) > 1 else f"file://{tempfile.mkdtemp(prefix='fletch-spark-archive-')}/raw"
    tz = argv[2] if len(argv) > 2 else "UTC"
    spark = spark_session()
    a = write_archive(spark, url, tz=tz)
    print(f"wrote {a.rows} rows in {a.batches} micro-batches to {a.url} (tz {a.tz}) in {a.seconds:.1f} s; "
          f"orphan {a.relative(a.orphan)} with {a.orphan_rows} rows")
    for u, size in a.files:
        print(f"{size:>10}  {a.relative(u)}")
    fs = HadoopFs(spark, url)
    log = [u for u, _ in a.files if "/_spark_metadata/" in u]
    for u in log:
        print(f"--- {a.relative(u)}\n{fs.read(u).decode()[:700]}")
    data = [u for u, _ in a.files if u.endswith(".parquet")]
    if url.startswith("file:"):
        print(parquet_schema(local_path(data[0])))
    t = Truth.of(spark, url)
    print("spark count", t.count(), "files", len(t.files()), "levels", t.groups("level"))
    spark.stop()


if __name__ == "__main__":
    main(sys.argv)
