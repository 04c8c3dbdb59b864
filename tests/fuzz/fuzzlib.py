"""Clients that behave like a hostile but patient caller, the per-case checks, and the
loop that runs a batch of cases against the fleet (restarting a server a case killed).

Every case ends as an Outcome: a protocol status plus what went wrong on the wire
(`broken`: dropped connection, body cut short, client gave up). The checks are the
issue's: no 5xx but 503 + Retry-After, no INTERNAL/UNKNOWN, no answer slower than the
query timeout + 1 s, the process alive. One deliberate extra: a 504 whose JSON body says
`"error": "timeout"` is fletch's documented answer to a query past its budget, so it is
accepted like a 503 (as are DEADLINE_EXCEEDED and UNAVAILABLE on Flight) -- provided the
work really stops: after a timeout answer nothing of fletch's may still run in PostgreSQL
1 s later, nor fletch keep burning CPU (README: "cancelled at the source after it").
"""

import http.client
import io
import json
import os
import re
import socket
import time
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.ipc
import pytest

FIXED_SEED = 20261202
FRESH_SEED = int(os.environ.get("FLETCH_FUZZ_SEED") or int.from_bytes(os.urandom(4), "big"))
SEEDS = [("fixed", FIXED_SEED), ("fresh", FRESH_SEED)]
CASES = int(os.environ.get("FLETCH_FUZZ_CASES", "2500"))  # generated cases per seed
ROWS = 20_000  # the same rows in PostgreSQL and Parquet: a self-join is ~170 M pairs
QUERY_TIMEOUT_S = 3.0  # the server's admission.query_timeout_ms
# Every answer must be complete within the server's budget plus this much.
ANSWER_LIMIT_S = QUERY_TIMEOUT_S + 1.0
# Client-side socket/gRPC timeout: a hang fails its case instead of hanging the suite.
CLIENT_TIMEOUT_S = QUERY_TIMEOUT_S + 5.0
KEEP_BODY = 32 << 20  # bytes of a body kept for validation; larger bodies are only drained


class Record:
    """What the whole run saw, for the terminal summary."""

    def __init__(self):
        self.cases = 0
        self.failures = []
        self.replacements = []
        self.failures_file = None

    def fail(self, case, problems, outcome):
        self.failures.append((case, problems))
        if self.failures_file:
            with open(self.failures_file, "a") as f:
                f.write(json.dumps({"case": case.id, "input": case.text, "problems": problems,
                                    "observed": outcome.summary()}, ensure_ascii=False) + "\n")


RECORD = Record()


@dataclass
class Outcome:
    proto: str  # "http" | "grpc"
    status: object  # HTTP status code, or a gRPC code name ("OK", "INVALID_ARGUMENT", ...)
    elapsed: float
    headers: dict = field(default_factory=dict)
    body: bytes = b""
    message: str = ""
    broken: str = ""  # transport failure; empty when a complete answer arrived
    hung: bool = False  # the client gave up waiting: the server may still be busy
    oversized: bool = False  # an HTTP request past the HTTP layer's limits (see MAX_HEAD)
    details: dict = field(default_factory=dict)

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def summary(self):
        s = f"{self.proto} {self.status} in {self.elapsed:.2f}s"
        if self.broken:
            s += f", {self.broken}"
        text = self.message or self.body[:300].decode("utf-8", "replace")
        return f"{s}: {text[:300]}" if text else s


@dataclass
class Case:
    id: str
    text: str  # the whole input, human-readable: what to replay
    call: object  # (server, Clients) -> Outcome
    checks: list = field(default_factory=list)  # extra (Outcome) -> [problem]

    def short(self, n=240):
        t = self.text if len(self.text) <= n else f"{self.text[:n]}…({len(self.text)} chars)"
        return t.encode("unicode_escape").decode()[: n + 40]


# ---------------------------------------------------------------- HTTP

# Beyond these a request may be refused without fletch's JSON: the HTTP layer (actix)
# answers a URI over 64 KiB with a bare 400 and a head over 128 KiB with a bare 431, and
# fletch stops reading a body over 4 MiB (a JSON 413), so the client may see the connection
# close while it still sends. MAX_HEAD stays well under the first.
MAX_HEAD, MAX_BODY = 32 << 10, 4 << 20


def http_call(server, method, target, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=CLIENT_TIMEOUT_S)
    t0 = time.monotonic()
    status, hdrs, buf = None, {}, bytearray()
    oversized = len(target) > MAX_HEAD or len(body or b"") > MAX_BODY
    try:
        try:
            conn.request(method, target, body=body, headers=headers or {})
        except OSError as e:
            if not oversized:
                raise
            return Outcome("http", None, time.monotonic() - t0, message=f"closed while sending an oversized request ({e})",
                           oversized=True)
        resp = conn.getresponse()
        status, hdrs = resp.status, {k.lower(): v for k, v in resp.getheaders()}
        while True:
            chunk = resp.read(1 << 16)
            if not chunk:
                break
            if len(buf) < KEEP_BODY:
                buf += chunk
            if time.monotonic() - t0 > CLIENT_TIMEOUT_S:
                return Outcome("http", status, time.monotonic() - t0, hdrs, bytes(buf),
                               broken=f"still streaming after {CLIENT_TIMEOUT_S:g} s", hung=True)
        return Outcome("http", status, time.monotonic() - t0, hdrs, bytes(buf), oversized=oversized)
    except (socket.timeout, TimeoutError):
        return Outcome("http", status, time.monotonic() - t0, hdrs, bytes(buf),
                       broken=f"no answer within {CLIENT_TIMEOUT_S:g} s", hung=True)
    except http.client.IncompleteRead as e:
        return Outcome("http", status, time.monotonic() - t0, hdrs, bytes(buf) + e.partial,
                       broken="body cut short (connection closed mid-body)")
    except (OSError, http.client.HTTPException) as e:
        what = "connection dropped" if status is None else "connection dropped mid-body"
        return Outcome("http", status, time.monotonic() - t0, hdrs, bytes(buf), broken=f"{what} ({type(e).__name__}: {e})")
    finally:
        conn.close()


def valid_body(o):
    """A 200's body must be complete and well-formed in its content type."""
    if len(o.body) >= KEEP_BODY:
        return None
    ctype = o.headers.get("content-type", "")
    try:
        if "x-ndjson" in ctype:
            for line in o.body.splitlines():
                if line.strip():
                    json.loads(line)
        elif "json" in ctype:
            json.loads(o.body)
        elif "arrow" in ctype:
            pyarrow.ipc.open_stream(io.BytesIO(o.body)).read_all()
        elif "csv" in ctype or "text/" in ctype:
            o.body.decode("utf-8")
    except Exception as e:  # noqa: BLE001 - any decoding failure is the finding
        return f"200 with a malformed {ctype or 'untyped'} body ({type(e).__name__}: {str(e)[:120]})"
    return None


def http_problems(o):
    out = []
    if o.broken:
        out.append(f"HTTP {o.status or '-'}: {o.broken}")
    if o.status is not None and o.status >= 500:
        ra = o.headers.get("retry-after", "")
        j = o.json() or {}
        if o.status == 503 and ra.isdigit() and int(ra) >= 1:
            pass
        elif o.status == 504 and isinstance(j, dict) and j.get("error") == "timeout":
            pass
        else:
            out.append(f"HTTP {o.status} (retry-after={ra or 'none'}): {o.body[:200]!r}")
    if o.status == 200 and not o.broken:
        bad = valid_body(o)
        if bad:
            out.append(bad)
    if o.status == 400 and not o.broken and not o.oversized and not isinstance(o.json(), dict):
        out.append(f"400 without a JSON error body: {o.body[:200]!r}")
    return out


# ---------------------------------------------------------------- Flight

_NAMES = {"invalid argument": "INVALID_ARGUMENT", "not found": "NOT_FOUND", "timeout": "DEADLINE_EXCEEDED",
          "unavailable": "UNAVAILABLE", "internal": "INTERNAL", "unimplemented": "UNIMPLEMENTED",
          "unauthenticated": "UNAUTHENTICATED", "unauthorized": "PERMISSION_DENIED",
          "already exists": "ALREADY_EXISTS", "resource exhausted": "RESOURCE_EXHAUSTED",
          "precondition failed": "FAILED_PRECONDITION", "aborted": "ABORTED",
          "out-of-range": "OUT_OF_RANGE", "data loss": "DATA_LOSS"}
# What gRPC says when the connection itself failed, as opposed to fletch answering UNAVAILABLE.
_TRANSPORT = re.compile(r"socket closed|connection reset|failed to connect|broken pipe|connection refused|"
                        r"end of tcp stream|connection closed|goaway|rst_stream|connections to all backends", re.I)
# Codes a server may legitimately answer a hostile call with.
FLIGHT_OK = {"OK", "INVALID_ARGUMENT", "NOT_FOUND", "UNIMPLEMENTED", "DEADLINE_EXCEEDED", "UNAVAILABLE",
             "RESOURCE_EXHAUSTED", "OUT_OF_RANGE", "FAILED_PRECONDITION"}


def grpc_code(e):
    """The gRPC code behind a pyarrow/ADBC exception; CLIENT_ERROR when the client itself
    choked on the answer (e.g. a FlightInfo without endpoints)."""
    if isinstance(e, flight.FlightCancelledError):
        return "CANCELLED"
    m = re.search(r"(?:Flight|gRPC) returned (.+?) error, with message", str(e))
    if m and m.group(1) in _NAMES:
        return _NAMES[m.group(1)]
    return "UNKNOWN" if isinstance(e, (pa.ArrowException, flight.FlightError, OSError)) else "CLIENT_ERROR"


class Clients:
    """Flight and ADBC connections to the current server, rebuilt after a replacement."""

    def __init__(self):
        self.port, self._flight, self._adbc = None, None, None

    def _for(self, server):
        if self.port != server.flight_port:
            self.close()
            self.port = server.flight_port

    def flight(self, server):
        self._for(server)
        if self._flight is None:
            self._flight = flight.connect(server.grpc)
        return self._flight

    def adbc(self, server):
        import adbc_driver_flightsql.dbapi as flightsql  # noqa: PLC0415 - only the ADBC cases need it
        self._for(server)
        if self._adbc is None:
            t = str(CLIENT_TIMEOUT_S)
            self._adbc = flightsql.connect(server.grpc, autocommit=True, db_kwargs={
                "adbc.flight.sql.rpc.timeout_seconds.query": t, "adbc.flight.sql.rpc.timeout_seconds.fetch": t})
        return self._adbc

    def close(self):
        for c in (self._flight, self._adbc):
            try:
                c and c.close()
            except Exception:  # noqa: BLE001 - closing a connection to a dead server
                pass
        self._flight = self._adbc = None


OPTIONS = flight.FlightCallOptions(timeout=CLIENT_TIMEOUT_S)


def drain(reader, t0):
    """Read a DoGet stream to its end, giving up (like a client would) past the timeout."""
    rows = 0
    while True:
        try:
            chunk = reader.read_chunk()
        except StopIteration:
            return rows, ""
        rows += chunk.data.num_rows if chunk.data is not None else 0
        if time.monotonic() - t0 > CLIENT_TIMEOUT_S:
            return rows, f"still streaming after {CLIENT_TIMEOUT_S:g} s"


def flight_call(server, clients, fn):
    """Run fn(client, t0) -> (rows, broken) on the pyarrow Flight client as one case."""
    t0 = time.monotonic()
    try:
        rows, broken = fn(clients.flight(server), t0)
        return Outcome("grpc", "OK", time.monotonic() - t0, message=f"{rows} rows", broken=broken, hung=bool(broken))
    except Exception as e:  # noqa: BLE001 - every failure is classified, none may escape
        elapsed, code, msg = time.monotonic() - t0, grpc_code(e), f"{type(e).__name__}: {e}"
        o = Outcome("grpc", code, elapsed, message=msg[:2000])
        if code == "UNAVAILABLE" and _TRANSPORT.search(msg):
            o.broken = "connection failed"
        if code == "DEADLINE_EXCEEDED" and elapsed >= CLIENT_TIMEOUT_S - 0.3:
            o.broken, o.hung = f"no answer within {CLIENT_TIMEOUT_S:g} s", True
        return o


def adbc_code(e):
    """ADBC's Go driver ends its messages with the gRPC code: "... (InvalidArgument; Prepare)"."""
    m = re.search(r"\((\w+); [^()]*\)\s*$", str(e))
    if m and getattr(e, "status_code", None) is not None:
        name = re.sub(r"(?<!^)([A-Z])", r"_\1", m.group(1)).upper()
        return {"CANCELED": "CANCELLED"}.get(name, name)
    return grpc_code(e)


def adbc_call(server, clients, sql, params=None):
    t0 = time.monotonic()
    try:
        with clients.adbc(server).cursor() as cur:
            cur.execute(sql, params)
            rows = cur.fetch_arrow_table().num_rows
        return Outcome("grpc", "OK", time.monotonic() - t0, message=f"{rows} rows")
    except Exception as e:  # noqa: BLE001 - every failure is classified, none may escape
        elapsed = time.monotonic() - t0
        code = adbc_code(e)
        details = {(k.decode() if isinstance(k, bytes) else k).lower(): v for k, v in (getattr(e, "details", None) or [])}
        o = Outcome("grpc", code, elapsed, message=str(e)[:2000], details=details)
        if code == "UNAVAILABLE" and _TRANSPORT.search(str(e)):
            o.broken = "connection failed"
        elif code == "UNAVAILABLE" and "retry-after" not in details:
            o.broken = "UNAVAILABLE without a retry-after hint"
        if code == "DEADLINE_EXCEEDED" and elapsed >= CLIENT_TIMEOUT_S - 0.3:
            o.broken, o.hung = f"no answer within {CLIENT_TIMEOUT_S:g} s", True
        return o


def grpc_problems(o):
    out = []
    if o.broken:
        out.append(f"{o.status}: {o.broken}: {o.message[:200]}")
    elif o.status not in FLIGHT_OK:
        out.append(f"{o.status}: {o.message[:300]}")
    return out


# ---------------------------------------------------------------- checks and the batch loop

def generic_problems(o):
    out = http_problems(o) if o.proto == "http" else grpc_problems(o)
    if o.elapsed > ANSWER_LIMIT_S and not o.hung:
        out.append(f"answered after {o.elapsed:.2f} s (limit {ANSWER_LIMIT_S:g} s)")
    return out


def rejected(o):
    """For inputs that must never succeed (DDL/DML, malformed tickets)."""
    ok = (o.proto == "http" and o.status is not None and o.status < 300) or (o.proto == "grpc" and o.status == "OK")
    return ["accepted (must be rejected)"] if ok and not o.broken else []


def left_running(fleet, server):
    """After a timeout the work must stop at the source (README: "cancelled at the source
    after it"): no statement of fletch's still running in PostgreSQL 1 s later, and fletch
    itself not still burning CPU. Leftovers are cancelled either way."""
    out = []
    late = fleet.settle(grace_s=1.0)  # a cancel request takes PostgreSQL milliseconds
    if late:
        pid, secs, query = late[0]
        out.append(f"PostgreSQL still running fletch's statement 1 s after the timeout answer (not cancelled "
                   f"at the source; {len(late)} statement(s), {secs} s old): {query}")
    # A runaway burns a core for good; a query winding down burns it for a moment. Only
    # three busy seconds in a row count.
    used = []
    while server.exit_code() is None and len(used) < 3 and (not used or used[-1] > 0.4):
        before = server.cpu_seconds()
        time.sleep(1.0)
        used.append(server.cpu_seconds() - before)
    if len(used) == 3 and min(used) > 0.4:
        out.append(f"fletch still busy after the timeout answer ({', '.join(f'{u:.2f}' for u in used)} CPU-s "
                   f"in each of the next 3 s)")
    return out


def run_cases(fleet, cases, repro):
    """Run cases one after another on the fleet's server; a case that kills or wedges the
    server is blamed and the server replaced, so the batch goes on."""
    clients, failed = Clients(), []
    server = fleet.live()
    try:
        for case in cases:
            o = case.call(server, clients)
            RECORD.cases += 1
            problems = generic_problems(o)
            for check in case.checks:
                problems += check(o)
            if not o.hung and o.status in (504, "DEADLINE_EXCEEDED"):
                problems += left_running(fleet, server)
            # A crash drops the connection a moment before the process is gone.
            if server.exit_code(wait_s=2.0 if (o.broken or o.status is None) else 0) is not None:
                problems.insert(0, f"SERVER DIED: {server.death_note()}")
                server = fleet.replace(f"killed by {case.id}")
            else:
                busy = any(p.startswith("fletch still busy") for p in problems)
                deaf = not (o.hung or busy) and not server.healthy()
                if deaf:
                    problems.append("server alive but /health does not answer")
                if o.hung or busy or deaf:
                    # Still working on (or stuck in) this case: start clean so its held
                    # permits and threads do not turn the next cases into 503s and 504s.
                    why = "the client gave up waiting" if o.hung else "still computing after its answer" if busy else "deaf"
                    server = fleet.replace(f"wedged by {case.id}: {why}")
                    fleet.settle(grace_s=0)
            if problems:
                RECORD.fail(case, problems, o)
                failed.append(f"[{case.id}] {case.short()}\n      -> {o.summary()[:400]}\n      !! " + "; ".join(problems)[:700])
        if not server.healthy():
            failed.append("server not healthy at the end of the batch")
    finally:
        clients.close()
    if failed:
        head = f"{len(failed)} of {len(cases)} cases failed ({repro}):\n"
        shown = failed[:30] + ([f"... and {len(failed) - 30} more (see {RECORD.failures_file})"] if len(failed) > 30 else [])
        pytest.fail(head + "\n".join(f"  {f}" for f in shown), pytrace=False)
