"""Deep pages of the hdfs source beside DuckDB over the same Parquet files (scripts/bench.sh
deep-pages). For each page: fletch's median / p95 over N requests, the rows its Parquet scans
decoded per request (fletch_hdfs_rows_scanned_total), how many pages passed over runs of files
by counting (fletch_hdfs_run_skips_total), DuckDB's median over the same ORDER BY timestamp
LIMIT/OFFSET query, and whether both gave the same timestamps.

    python bench_deep_pages.py BASE_URL PARQUET_DIR N
"""

import json
import statistics
import sys
import time
import urllib.parse
import urllib.request

import duckdb

LIMIT = 100
# (order, offset, label filters)
PAGES = [
    ("asc", 10_000, {}),
    ("asc", 1_000_000, {}),
    ("asc", 5_000_000, {}),
    ("desc", 5_000_000, {}),
    ("asc", 9_999_000, {}),
    ("asc", 200_000, {"level": "ERROR"}),
    ("desc", 200_000, {"level": "ERROR"}),
    ("asc", 1_000_000, {"service": "payment-service"}),
]


def metric(base, name):
    """A counter's value; NaN when this fletch has no such counter (an older build)."""
    text = urllib.request.urlopen(base + "/metrics", timeout=30).read().decode()
    return float(next((line.split()[1] for line in text.splitlines() if line.startswith(name + " ")), "nan"))


def fletch_page(base, order, offset, labels):
    q = {"order_by": "timestamp", "order_dir": order, "limit": LIMIT, "offset": offset, "count": "none", **labels}
    t0 = time.perf_counter()
    body = urllib.request.urlopen(f"{base}/api/query/hdfs/logs?{urllib.parse.urlencode(q)}", timeout=600).read()
    return time.perf_counter() - t0, [r["timestamp"] for r in json.loads(body)["data"]]


def duckdb_page(con, glob, order, offset, labels):
    where = " AND ".join(f"{k} = ?" for k in labels)
    sql = ('SELECT "timestamp", level, service, host, message, metadata '
           f"FROM read_parquet('{glob}') {'WHERE ' + where if where else ''} "
           f'ORDER BY "timestamp" {order} LIMIT {LIMIT} OFFSET {offset}')
    t0 = time.perf_counter()
    rows = con.execute(sql, list(labels.values())).fetchall()
    return time.perf_counter() - t0, [r[0] for r in rows]


def ms(xs):
    xs = sorted(xs)
    return statistics.median(xs) * 1000, xs[min(len(xs) - 1, int(len(xs) * 0.95 + 0.5) - 1)] * 1000


def main():
    base, root, n = sys.argv[1], sys.argv[2].rstrip("/"), int(sys.argv[3])
    con = duckdb.connect()
    con.execute("SET threads = 2")
    glob = f"{root}/**/*.parquet"
    print(f"{'page (limit 100)':44} {'fletch median / p95':>22} {'rows decoded':>13} {'runs':>5} "
          f"{'DuckDB median':>14}  same")
    for order, offset, labels in PAGES:
        label = f"{order} offset={offset:,}" + "".join(f" {k}={v}" for k, v in labels.items())
        scanned, skips = metric(base, "fletch_hdfs_rows_scanned_total"), metric(base, "fletch_hdfs_run_skips_total")
        times, got = [], None
        for _ in range(n):
            t, got = fletch_page(base, order, offset, labels)
            times.append(t)
        decoded = (metric(base, "fletch_hdfs_rows_scanned_total") - scanned) / n
        skipped = (metric(base, "fletch_hdfs_run_skips_total") - skips) / n
        ref_times, want = [], None
        for _ in range(max(1, n // 3)):
            t, want = duckdb_page(con, glob, order, offset, labels)
            ref_times.append(t)
        (m, p), (rm, _) = ms(times), ms(ref_times)
        same = "yes" if got == want else f"NO ({len(got)} vs {len(want)} rows)"
        print(f"{label:44} {m:9.1f} / {p:9.1f} ms {decoded:13,.0f} {skipped:5.0f} {rm:11.1f} ms  {same}", flush=True)


if __name__ == "__main__":
    main()
