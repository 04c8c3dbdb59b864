"""N clients reading exports slowly at once; reports fletch's peak RSS.

    python3 scripts/bench_slow_readers.py BASE_URL PID READERS [SECONDS] [BYTES_PER_S]

Each reader opens `GET /api/query/{postgres|hdfs}/logs/export?format=ndjson` (alternating),
keeps its socket's receive buffer small and reads BYTES_PER_S (default 16384) for SECONDS
(default 30), then closes. Loopback only. Prints one line: readers by status, bytes read,
fletch RSS now and peak (VmHWM) in MB.
"""

import os
import socket
import sys
import threading
import time
from urllib.parse import urlparse


# Which sources the readers export from, in turn (FLETCH_SLOW_SOURCES=hdfs for one).
SOURCES = os.environ.get("FLETCH_SLOW_SOURCES", "postgres,hdfs").split(",")


def rss_mb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) // 1024
    return -1


def reader(host, port, path, seconds, rate, out, i):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    s.settimeout(seconds + 30)
    try:
        s.connect((host, port))
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        first = s.recv(4096)
        status = first.split(b" ", 2)[1].decode() if first.startswith(b"HTTP/") else "?"
        got, end = len(first), time.monotonic() + seconds
        while time.monotonic() < end:
            chunk = s.recv(min(rate // 4, 65536))
            if not chunk:
                break
            got += len(chunk)
            time.sleep(0.25)
        out[i] = (status, got)
    except OSError as e:
        out[i] = (f"error:{e.__class__.__name__}", 0)
    finally:
        s.close()


def main():
    base, pid, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 30.0
    rate = int(sys.argv[5]) if len(sys.argv) > 5 else 16384
    u = urlparse(base)
    if u.hostname not in ("127.0.0.1", "localhost", "::1"):
        sys.exit(f"refusing to load a non-loopback address: {u.hostname}")
    out = [None] * n
    threads = []
    for i in range(n):
        src = SOURCES[i % len(SOURCES)]
        path = f"/api/query/{src}/logs/export?format=ndjson"
        t = threading.Thread(target=reader, args=(u.hostname, u.port, path, seconds, rate, out, i), daemon=True)
        t.start()
        threads.append(t)
    peak_seen = 0
    while any(t.is_alive() for t in threads):
        peak_seen = max(peak_seen, rss_mb(pid, "VmRSS"))
        time.sleep(0.5)
    statuses = {}
    for status, _ in out:
        statuses[status] = statuses.get(status, 0) + 1
    total = sum(got for _, got in out)
    print(
        f"{n} readers x {seconds:.0f} s at {rate} B/s: statuses {statuses}, read {total / 1e6:.1f} MB; "
        f"fletch RSS peak during run {peak_seen} MB, VmHWM {rss_mb(pid, 'VmHWM')} MB"
    )


if __name__ == "__main__":
    main()
