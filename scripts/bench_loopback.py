"""The cost of moving N bytes over loopback TCP, with nothing else to do.

`scripts/bench.sh flight-floor` runs this with the byte count of a whole `hdfs` export,
so the figure can be set beside the Flight `do_get` of the same bytes: whatever a Flight
server and client add, they cannot go below this. A sender process writes a buffer in a
loop, a receiver process reads into a buffer and drops it; each reports its own CPU.

    python3 scripts/bench_loopback.py BYTES [CHUNK_BYTES]
"""
import os
import socket
import sys
import time


def main():
    total = int(sys.argv[1])
    chunk = int(sys.argv[2]) if len(sys.argv) > 2 else 1 << 20
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # sender
        os.close(read_end)
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = memoryview(os.urandom(chunk))
        sent = 0
        while sent < total:
            sent += s.send(buf[: min(chunk, total - sent)])
        s.close()
        t = os.times()
        os.write(write_end, f"{t.user + t.system:.2f}".encode())
        os._exit(0)
    os.close(write_end)
    conn, _ = listener.accept()
    buf = memoryview(bytearray(chunk))
    got = 0
    c0, t0 = os.times(), time.perf_counter()
    while True:
        n = conn.recv_into(buf)
        if n == 0:
            break
        got += n
    dt, c1 = time.perf_counter() - t0, os.times()
    os.waitpid(pid, 0)
    sender_cpu = float(os.read(read_end, 64).decode())
    receiver_cpu = (c1.user - c0.user) + (c1.system - c0.system)
    print(f"loopback TCP: {got / 1e9:.2f} GB in {dt:.2f} s = {got / dt / 1e9:.2f} GB/s; "
          f"CPU sender {sender_cpu:.2f} s + receiver {receiver_cpu:.2f} s = {sender_cpu + receiver_cpu:.2f} s")


if __name__ == "__main__":
    main()
