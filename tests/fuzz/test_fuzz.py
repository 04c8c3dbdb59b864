"""Fuzzing a real fletch like a hostile client: known killers first (each its own test),
then thousands of seeded cases per category, then a check that no data was touched.

Reproduce a generated failure: FLETCH_FUZZ_SEED=<fresh seed> bash tests/fuzz/run.sh -k '<test id>'
(the fixed seed 20261202 runs every time; the failing case's full input is in failures.jsonl).
"""

import json
import math
import random
import re

import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest

import gen_sql
import gen_wire
from conftest import psql_scalar, snapshot
from fuzzlib import CASES, OPTIONS, ROWS, SEEDS, Case, drain, flight_call, http_call, run_cases

# ---------------------------------------------------------------- regression cases

# What a refusal "naming a limit" looks like in a message.
LIMIT_WORDS = re.compile(r"limit|too (deep|long|many|large|complex|big)|exceed|maximum|nest|depth|recursion", re.I)


def chain(table, term, joiner, n):
    return f"SELECT count(*) FROM {table} WHERE " + joiner.join([term] * n)


def refused_naming_a_limit(o):
    text = o.body.decode("utf-8", "replace") if o.proto == "http" else o.message
    want = 400 if o.proto == "http" else "INVALID_ARGUMENT"
    if o.status != want or not LIMIT_WORDS.search(text):
        return [f"expected {want} naming a limit, got {o.status}: {text[:200]}"]
    return []


def bad_request(o):
    if o.proto == "http":
        j = o.json()
        ok = o.status == 400 and isinstance(j, dict) and "error" in j
    else:
        ok = o.status == "INVALID_ARGUMENT"
    return [] if ok else [f"expected 400 with a JSON error / INVALID_ARGUMENT, got {o.status}"]


def answered(o):
    return [] if o.status in (200, "OK") else [f"expected an answer, got {o.status}"]


def timely(o):
    return []  # the generic checks already hold every answer to the timeout + 1 s


def offset_refused_or_answered(o):
    text = o.body.decode("utf-8", "replace") if o.proto == "http" else o.message
    if o.status in (200, "OK") or (o.status in (400, "INVALID_ARGUMENT") and "offset" in text):
        return []
    return [f"expected a 400 naming `offset` or a fast 200, got {o.status}: {text[:200]}"]


REGRESSION_SQL = [
    ("plus_chain_2000", "SELECT 1" + "+1" * 2000, refused_naming_a_limit),
    ("and_chain_2000_postgres", chain("postgres.logs", "level = 'A'", " AND ", 2000), refused_naming_a_limit),
    ("and_chain_2000_hdfs", chain("hdfs.logs", "level = 'A'", " AND ", 2000), refused_naming_a_limit),
    ("or_chain_12000_postgres", chain("postgres.logs", "level = 'A'", " OR ", 12000), refused_naming_a_limit),
    ("or_chain_12000_hdfs", chain("hdfs.logs", "level='A'", " OR ", 12000), refused_naming_a_limit),
    ("concat_5000", "SELECT " + " || ".join(["'a'"] * 5000), refused_naming_a_limit),
    ("concat_30000", "SELECT " + " || ".join(["'a'"] * 30000), refused_naming_a_limit),
    ("cross_join_hdfs", "SELECT max(a.id + b.id) FROM hdfs.logs a CROSS JOIN hdfs.logs b", timely),
    ("self_join_postgres_on_level", "SELECT count(*) FROM postgres.logs a JOIN postgres.logs b ON a.level = b.level", timely),
    # A nested loop PostgreSQL runs for minutes: the timeout must cancel it there.
    ("nested_loop_join_postgres", "SELECT count(*), max(a.id) FROM postgres.logs a LEFT JOIN postgres.logs b "
                                  "ON a.id = b.id OR a.id = b.id + 7", timely),
    ("divide_by_zero", "SELECT 1/0", bad_request),
    # Past sqlparser's recursion limit these backtrack exponentially on the query runtime.
    ("nested_cast_60", "SELECT " + "CAST(" * 60 + "1" + " AS BIGINT)" * 60, bad_request),
    ("nested_not_60", "SELECT " + "NOT (" * 60 + "TRUE" + ")" * 60, bad_request),
    ("nul_in_literal_postgres", "SELECT * FROM postgres.logs WHERE message = 'a\u0000b'", bad_request),
    # A negative length per row is the empty string (it panicked with "capacity overflow").
    ("lpad_negative_per_row_postgres", "SELECT max(length(lpad(message, (id - 9223372036854775807) % 100))) "
                                       "FROM postgres.logs", answered),
    ("rpad_negative_per_row_hdfs", "SELECT max(length(rpad(message, -1 - id % 5, 'x'))) FROM hdfs.logs", answered),
    # Legal lengths whose sum over a batch is terabytes must be refused, not allocated.
    ("lpad_terabytes_postgres", "SELECT max(length(lpad(message, 1000000000 + id * 0))) FROM postgres.logs",
     refused_naming_a_limit),
    ("repeat_terabytes_hdfs", "SELECT max(length(repeat(message, 100000000 + id * 0))) FROM hdfs.logs",
     refused_naming_a_limit),
]


def sql_over(via, name, sql, check):
    if via == "http":
        body = json.dumps({"sql": sql}).encode()
        return Case(name, f"POST /api/sql {json.dumps({'sql': sql})}",
                    lambda s, c: http_call(s, "POST", "/api/sql", body, {"Content-Type": "application/json"}), [check])

    def fn(client, t0):
        info = client.get_flight_info(flight.FlightDescriptor.for_command(gen_wire.statement(sql)), OPTIONS)
        return drain(client.do_get(info.endpoints[0].ticket, OPTIONS), t0)
    return Case(name, f"Flight SQL CommandStatementQuery: {sql}", lambda s, c: flight_call(s, c, fn), [check])


@pytest.mark.parametrize("via", ["http", "flight_sql"])
@pytest.mark.parametrize("name,sql,check", REGRESSION_SQL, ids=[r[0] for r in REGRESSION_SQL])
def test_regression_sql(fleet, server, name, sql, check, via):
    run_cases(fleet, [sql_over(via, f"regression/{name}/{via}", sql, check)], "a fixed regression case")


REGRESSION_OFFSETS = [(src, route, off) for src in ("postgres", "hdfs") for route in ("logs", "logs/export")
                      for off in ("9223372036854775807", "9223372036854775707")]


@pytest.mark.parametrize("src,route,offset", REGRESSION_OFFSETS, ids=[f"{s}-{r}-{o}" for s, r, o in REGRESSION_OFFSETS])
def test_regression_huge_offset(fleet, server, src, route, offset):
    target = f"/api/query/{src}/{route}?offset={offset}"
    http = Case(f"regression/offset/{src}/{route}/{offset}", f"GET {target}",
                lambda s, c: http_call(s, "GET", target), [offset_refused_or_answered])
    kind = "logs" if route == "logs" else "export"
    raw = json.dumps({"source": src, "kind": kind, "params": {"offset": int(offset)}}).encode()
    grpc = Case(f"regression/offset/{src}/{kind}-ticket/{offset}", f"do_get(ticket={raw!r})",
                lambda s, c: flight_call(s, c, gen_wire.get(raw)), [offset_refused_or_answered])
    run_cases(fleet, [http, grpc], "a fixed regression case")


def invalid_argument(o):
    return [] if o.status == "INVALID_ARGUMENT" else [f"expected INVALID_ARGUMENT, got {o.status}: {o.message[:200]}"]


def not_a_ticket(o):
    return [] if o.status in ("INVALID_ARGUMENT", "NOT_FOUND") else [f"expected INVALID_ARGUMENT or NOT_FOUND, got {o.status}"]


REGRESSION_TICKETS = [
    ("empty_ticket", b"", invalid_argument),
    ("nul_byte", b"\x00", not_a_ticket),
    ("ff_bytes", b"\xff" * 16, not_a_ticket),
    ("text", b"garbage", not_a_ticket),
    ("any_with_unknown_type", gen_wire.pb_str(1, "hello"), not_a_ticket),
    ("any_with_empty_value", gen_wire.pb_str(1, "type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery"), not_a_ticket),
    ("truncated_statement", gen_wire.statement("SELECT 1")[:-3], not_a_ticket),
    ("json_wrong_types", b'{"source": 1, "kind": [], "params": "x"}', not_a_ticket),
    ("json_sql_number", b'{"sql": 5}', not_a_ticket),
]


@pytest.mark.parametrize("call", ["do_get", "get_flight_info"])
@pytest.mark.parametrize("name,raw,check", REGRESSION_TICKETS, ids=[t[0] for t in REGRESSION_TICKETS])
def test_regression_ticket(fleet, server, name, raw, check, call):
    if call == "do_get":
        fn, text = gen_wire.get(raw), f"do_get(ticket={raw!r})"
    else:
        fn = gen_wire.unary(lambda c: c.get_flight_info(flight.FlightDescriptor.for_command(raw), OPTIONS))
        text = f"get_flight_info(FlightDescriptor.for_command({raw!r}))"
    run_cases(fleet, [Case(f"regression/ticket/{name}/{call}", text, lambda s, c: flight_call(s, c, fn), [check])],
              "a fixed regression case")


# ---------------------------------------------------------------- generated cases

def make_http(rng, cid):
    return gen_wire.http_case(rng, cid)


def make_sql_http(rng, cid):
    return gen_wire.sql_http_case(rng, cid, *gen_sql.sql(rng))


def make_sql_flight(rng, cid):
    return gen_wire.sql_flight_case(rng, cid, *gen_sql.sql(rng))


def make_flight(rng, cid):
    return gen_wire.flight_case(rng, cid)


# (category, share of FLETCH_FUZZ_CASES, case maker)
CATEGORIES = [("http", 0.30, make_http), ("sql_http", 0.25, make_sql_http),
              ("sql_flight", 0.25, make_sql_flight), ("flight", 0.20, make_flight)]
BATCH = 100


def batches():
    for label, seed in SEEDS:
        for cat, share, _ in CATEGORIES:
            n = max(1, round(CASES * share))
            for b in range(math.ceil(n / BATCH)):
                yield pytest.param(label, seed, cat, b, min(BATCH, n - b * BATCH), id=f"{cat}-{label}-{seed}-b{b}")


@pytest.mark.parametrize("label,seed,cat,batch,count", list(batches()))
def test_generated(fleet, server, label, seed, cat, batch, count):
    make = dict((c, m) for c, _, m in CATEGORIES)[cat]
    # One stream per batch: a batch replays alone (-k) exactly as it ran in the full suite.
    rng = random.Random(f"{seed}/{cat}/{batch}")
    cases = [make(rng, f"{cat}/{label}-{seed}/b{batch}/#{i}") for i in range(count)]
    env = "" if label == "fixed" else f"FLETCH_FUZZ_SEED={seed} "
    run_cases(fleet, cases, f"seed {seed}; reproduce: {env}bash tests/fuzz/run.sh -k '{cat}-{label}-{seed}-b{batch}'")


# ---------------------------------------------------------------- the data is untouched

def test_data_unchanged(fleet, pg_url, parquet_dir, baseline):
    """Last on purpose: whatever the cases sent (DDL, DML, COPY), the stores are as loaded."""
    assert psql_scalar(pg_url, "SELECT count(*) FROM logs") == ROWS
    assert snapshot(pg_url, parquet_dir) == baseline, "tables or Parquet files changed during the run"
    assert sum(pq.read_metadata(f).num_rows for f in parquet_dir.rglob("*.parquet")) == ROWS
    fleet.settle(grace_s=0)  # statements left running by earlier cases were reported there
    server = fleet.live()
    for table in ("postgres.logs", "hdfs.logs"):
        body = json.dumps({"sql": f"SELECT count(*) AS n FROM {table}"}).encode()
        o = http_call(server, "POST", "/api/sql", body, {"Content-Type": "application/json"})
        assert o.status == 200 and not o.broken, f"count(*) of {table} through fletch: {o.summary()}"
        assert json.loads(o.body.splitlines()[0])["n"] == ROWS, f"count(*) of {table} through fletch: {o.body[:200]!r}"
