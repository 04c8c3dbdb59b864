"""Flight do_get of a whole source, timed (used by `scripts/bench.sh flight-ab` and
`scripts/bench_flight.py`).

Batches are counted and dropped as they arrive, never held whole. Reports rows/s, IPC
messages received and this client's own CPU (user/sys), since client and server share the
machine's cores.
"""
import json
import os
import sys
import time

import pyarrow.flight as flight


def timed_do_get(client, source, order="asc"):
    """One export `do_get`; a line describing rows, messages, rows/s and client CPU."""
    ticket = flight.Ticket(json.dumps({"source": source, "kind": "export", "params": {"order_dir": order}}).encode())
    t, c0 = time.perf_counter(), os.times()
    rows = messages = 0
    for chunk in client.do_get(ticket):
        rows += chunk.data.num_rows
        messages += 1
    dt, c1 = time.perf_counter() - t, os.times()
    return (f"{rows} rows, {messages} messages in {dt:.2f} s = {rows / dt:,.0f} rows/s; "
            f"client CPU user {c1.user - c0.user:.2f} s sys {c1.system - c0.system:.2f} s")


if __name__ == "__main__":
    addr = sys.argv[1]
    order = sys.argv[2] if len(sys.argv) > 2 else "asc"
    print(timed_do_get(flight.connect(addr), "hdfs", order), end="")
