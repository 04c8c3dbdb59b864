"""Flight benchmarks for BENCHMARKS.md (run by `scripts/bench.sh flight`).

do_get of a whole source (rows/s, batches streamed, never held whole by this client), and
Flight SQL latency of a filtered aggregate on each source (median of N runs).
"""
import statistics
import sys
import time

import pyarrow.flight as flight
from adbc_driver_flightsql import dbapi

from bench_doget import timed_do_get

addr = sys.argv[1] if len(sys.argv) > 1 else "grpc://127.0.0.1:18081"
client = flight.connect(addr)

for source in ("hdfs", "postgres"):
    print(f"flight do_get {source} export: {timed_do_get(client, source)}")

with dbapi.connect(addr) as conn:
    for source in ("hdfs", "postgres"):
        sql = f"SELECT service, count(*) AS n FROM {source}.logs WHERE level = 'ERROR' GROUP BY service ORDER BY n DESC"
        times = []
        for _ in range(5):
            cur = conn.cursor()
            t = time.perf_counter()
            cur.execute(sql)
            cur.fetch_arrow_table()
            times.append((time.perf_counter() - t) * 1000)
            cur.close()
        print(f"flight sql filtered aggregate on {source}.logs: median {statistics.median(times):.1f} ms (5 runs, min {min(times):.1f})")
