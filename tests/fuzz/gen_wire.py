"""Seeded generators of requests on the wire: HTTP query strings and bodies for every
route, plain-Flight JSON tickets, Flight SQL protobuf commands (encoded by hand, so they
can be malformed on purpose), and the calls that carry generated SQL. Each returns a Case.
"""

import json
from urllib.parse import quote

import pyarrow as pa
import pyarrow.flight as flight

import gen_sql
from flight_sql_wire import any_cmd, pb_bytes, pb_field, pb_int, pb_str
from fuzzlib import OPTIONS, Case, adbc_call, drain, flight_call, http_call, rejected

ROUTES = ["/api/query/{s}/logs", "/api/query/{s}/logs/export", "/api/query/{s}/logs/aggregate",
          "/api/query/{s}/stats", "/api/query/compare", "/health", "/ready", "/metrics", "/openapi.json"]
PARAMS = ["level", "service", "host", "start_time", "end_time", "limit", "offset", "order_by", "order_dir",
          "count", "format", "group_by"]
ODD_NAMES = ["", "levle", "LEVEL", "limit[]", "sql", "source", "a" * 300, "%00", "lévél", "__proto__", "level ", "+"]
ENUMS = ["ERROR", "INFO", "WARN", "DEBUG", "api-gateway", "worker-1", "payment-service", "level", "service", "host",
         "timestamp", "created_at", "id", "asc", "DESC", "aSc", "ndjson", "csv", "arrow", "json", "parquet", "auto",
         "exact", "estimate", "none"]
NUMBERS = ["0", "1", "-1", "10000", "10001", "9223372036854775807", "9223372036854775808", "9223372036854775707",
           "-9223372036854775808", "18446744073709551616", "1e308", "1e309", "-1e309", "NaN", "inf", "-0", "0x10",
           "1_000", " 5", "+5", "05", "1.5", ".5", "1e3", "١٢٣", "1735689600", "1735689600.5", "99999999999999999999e9"]
ACCEPTS = ["application/json", "application/x-ndjson", "text/csv", "application/vnd.apache.arrow.stream", "*/*",
           "text/html", "application/vnd.apache.arrow.file", "garbage/*", "a/b;q=2;;;,,", ""]


def value(rng):
    r = rng.random()
    if r < 0.3:
        return rng.choice(ENUMS)
    if r < 0.6:
        return rng.choice(NUMBERS) if rng.random() < 0.8 else str(rng.randint(-10**12, 10**12))
    if r < 0.7:
        return ""
    if r < 0.8:
        return gen_sql.ustr(rng, rng.randint(1, 30))
    if r < 0.9:
        return rng.choice(["x", "E", "%", "é"]) * rng.choice([11, 51, 101, 1000, 10_000, 60_000])
    return rng.choice(["' OR 1=1 --", "ERROR'; DROP TABLE logs; --", "%", "_", "\\", "$1", "\x00", "\r\n", "a\x00b",
                       "null", "true", "[]", "{}", "ERROR,INFO", "ERROR&level=INFO"])


def encode(rng, s):
    """Percent-encode like a browser, or like a broken client."""
    r = rng.random()
    if r < 0.75:
        return quote(s, safe="")
    if r < 0.85:
        return quote(s, safe="+,;:@$!*'()").replace("%20", "+")
    garbage = rng.choice(["%", "%G1", "%ff", "%C3%28", "%00", "%%", "%2", "%ED%A0%80", "%F4%90%80%80", "%c0%af"])
    cut = rng.randint(0, len(s))
    return quote(s[:cut], safe="") + garbage + quote(s[cut:], safe="")


def query_string(rng):
    pairs = []
    for _ in range(rng.choice([0, 1, 1, 2, 3, 4, 8])):
        name = rng.choice(PARAMS) if rng.random() < 0.85 else rng.choice(ODD_NAMES)
        pairs.append(f"{encode(rng, name)}={encode(rng, value(rng))}")
        if rng.random() < 0.08:
            pairs.append(pairs[-1] if rng.random() < 0.5 else f"{encode(rng, name)}={encode(rng, value(rng))}")
    if rng.random() < 0.1:
        pairs.append(rng.choice(["", "=", "level", "=5", "&&", ";", "a=b=c", "?x=1"]))
    return "&".join(pairs)


def source(rng):
    if rng.random() < 0.88:
        return rng.choice(["postgres", "hdfs"])
    return rng.choice(["POSTGRES", "mysql", "%00", "..", "hdfs%2Flogs", "postgres%20", "%E2%80%AE", "x" * 5000, "%"])


def sql_body(rng):
    """Bodies for POST /api/sql, from plausible to hostile."""
    s = rng.choice(["SELECT 1", "SELECT count(*) FROM hdfs.logs", gen_sql.sql(rng)[1]])
    return rng.choice([
        json.dumps({"sql": s}), json.dumps({"sql": s, "format": rng.choice(ENUMS + ["", "NDJSON", 5])}),
        json.dumps({"sql": s, "extra": 1}), json.dumps({"SQL": s}), json.dumps({"sql": 1}), json.dumps({"sql": None}),
        json.dumps({"sql": [s]}), json.dumps({"sql": {"sql": s}}), "[]", "1", '"SELECT 1"', "null", "{}", "",
        '{"sql": "SELECT 1", "sql": "SELECT 2"}', json.dumps({"sql": s})[:-1], json.dumps({"sql": s}) + "garbage",
        "\ufeff" + json.dumps({"sql": s}), '{"sql": NaN}', "[" * rng.choice([100, 10_000, 100_000]),
        '{"sql": "\\ud800"}', '{"sql": "' + "x" * rng.choice([300_000, 2_000_000]) + '"}', s,
    ]).encode("utf-8", "surrogatepass") + (b"\xff\xfe" if rng.random() < 0.03 else b"")


def http_case(rng, cid):
    route = rng.choice(ROUTES + ["/api/sql"] * 2 + ["/api/query/{s}", "/api/query/{s}/logs/", "/nope"])
    path = route.replace("{s}", source(rng))
    method = "POST" if route == "/api/sql" and rng.random() < 0.9 else "GET"
    if rng.random() < 0.05:
        method = rng.choice(["POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"])
    qs = query_string(rng)
    target = path + ("?" + qs if qs or rng.random() < 0.1 else "")
    body = sql_body(rng) if method == "POST" else None
    headers = {}
    if rng.random() < 0.3:
        headers["Accept"] = rng.choice(ACCEPTS)
    if body is not None and rng.random() < 0.8:
        headers["Content-Type"] = rng.choice(["application/json", "text/plain", "application/x-www-form-urlencoded"])
    if rng.random() < 0.05:
        headers["X-Request-Id"] = rng.choice(["", "x" * 100, "é", "a\tb"])
    text = f"{method} {target}" + (f" headers={headers}" if headers else "") + (f" body={body[:2000]!r}" if body else "")
    return Case(cid, text, lambda s, c: http_call(s, method, target, body, headers))


def sql_http_case(rng, cid, kind, sql):
    fmt = rng.choice([None, None, "ndjson", "csv", "arrow", "garbage"])
    body = {"sql": sql} if fmt is None or rng.random() < 0.5 else {"sql": sql, "format": fmt}
    target = "/api/sql" + (f"?format={fmt}" if fmt and "format" not in body else "")
    headers = {"Content-Type": "application/json"}
    if rng.random() < 0.2:
        headers["Accept"] = rng.choice(ACCEPTS[:4])
    raw = json.dumps(body).encode()
    text = f"POST {target} {json.dumps(body, ensure_ascii=False)}"
    return Case(cid, text, lambda s, c: http_call(s, "POST", target, raw, headers), [rejected] if kind == "ddl" else [])


def statement(sql):
    return any_cmd("CommandStatementQuery", pb_str(1, sql))


def random_command(rng):
    """A Flight SQL command: well-formed with odd fields, or malformed in one place."""
    pat = lambda: pb_str(rng.choice([1, 2, 3]), rng.choice(["%", "", "%%%%%%%%%b", "\\", "logs", "_" * 5000,
                                                              gen_sql.ustr(rng, 8), "[a-", "(a+)+$"]))
    name, val = rng.choice([
        ("CommandGetTables", pat() + pat() + pb_int(5, rng.choice([0, 1, 2, 2**64 - 1])) + pb_str(4, "TABLE")),
        ("CommandGetDbSchemas", pat() + pat()), ("CommandGetCatalogs", b""), ("CommandGetTableTypes", b""),
        ("CommandGetSqlInfo", b"".join(pb_int(1, rng.choice([0, 1, 500, 2**32 - 1, 2**63])) for _ in range(rng.randint(0, 5)))),
        ("CommandPreparedStatementQuery", pb_bytes(1, rng.randbytes(rng.choice([0, 1, 16, 64])))),
        ("TicketStatementQuery", pb_bytes(1, rng.choice([b"SELECT 1", b"\xff\xfe", b"", rng.randbytes(20)]))),
        ("CommandStatementQuery", pb_str(1, rng.choice(["", "SELECT 1", gen_sql.garbage(rng)])) + pb_bytes(2, b"tx")),
        ("CommandStatementUpdate", pb_str(1, "DELETE FROM postgres.logs")), ("CommandGetPrimaryKeys", pat()),
        ("CommandGetXdbcTypeInfo", b""), ("CommandStatementSubstraitPlan", rng.randbytes(30)),
        ("CommandStatementIngest", pb_str(2, "logs")), ("CommandGetExportedKeys", b""),
        ("NoSuchCommand", b""), ("../../etc/passwd", b""), ("", b""),
    ])
    cmd = any_cmd(name, val)
    r = rng.random()
    if r < 0.15:
        cmd = cmd[: rng.randint(0, len(cmd))]  # truncated
    elif r < 0.25:
        cmd = pb_str(1, "type.googleapis.com/" + gen_sql.ustr(rng, 10)) + pb_bytes(2, rng.randbytes(12))
    elif r < 0.3:
        cmd = pb_bytes(2, val) + pb_str(1, "type.googleapis.com/arrow.flight.protocol.sql." + name) + b"\x08\xff"
    return cmd


def json_ticket(rng):
    params = {rng.choice(PARAMS + ODD_NAMES[:4]): value(rng) for _ in range(rng.randint(0, 4))}
    t = {"source": rng.choice(["postgres", "hdfs"]), "kind": rng.choice(["logs", "export", "aggregate", "stats"]),
         "params": params}
    r = rng.random()
    if r < 0.15:
        t[rng.choice(["source", "kind", "params"])] = rng.choice([1, None, [], {}, True, "", "x" * 10000, 1.5])
    elif r < 0.3 and params:
        t["params"][rng.choice(list(params))] = rng.choice([None, [], {"a": 1}, 2**70, -2**63, 1e300, True, 0.1])
    elif r < 0.4:
        t = {"sql": rng.choice([gen_sql.sql(rng)[1], 1, None, ["SELECT 1"], ""])}
        if rng.random() < 0.3:
            t["source"] = "hdfs"
    elif r < 0.45:
        t["extra"] = 1
    text = json.dumps(t)
    r = rng.random()
    if r < 0.05:
        text = rng.choice(["{", "{}", "{\"source\": \"hdfs\", \"source\": \"postgres\", \"kind\": \"stats\"}",
                           "{\"limit\": 1e99999}", "{" * 5000, " \n\t{\"kind\": \"stats\"}x", "{\"sql\": \"\\ud800\"}"])
    elif r < 0.1:
        text = text.replace("1", "1" * 400, 1)
    return text.encode("utf-8", "surrogatepass")


def only(*codes):
    def check(o):
        return [] if o.status in codes else [f"expected {' or '.join(codes)}, got {o.status}"]
    return check


def unary(f):
    """A call without a stream to drain, in the (rows, broken) shape flight_call wants."""
    def fn(client, t0):
        f(client)
        return 0, ""
    return fn


def get(raw):
    return lambda client, t0: drain(client.do_get(flight.Ticket(raw), OPTIONS), t0)


def flight_case(rng, cid):
    """One hostile plain-Flight or Flight SQL call."""
    r, checks = rng.random(), []
    if r < 0.2:
        raw = rng.randbytes(rng.choice([0, 1, 2, 5, 64, 4096])) if rng.random() < 0.8 else b" \x00{" + rng.randbytes(30)
        if raw.lstrip(b" \t\r\n").startswith(b"{"):
            raw = b"\x01" + raw  # random bytes, not a JSON ticket by accident
        desc, fn, checks = f"do_get(ticket={raw!r})", get(raw), [only("INVALID_ARGUMENT", "NOT_FOUND")]
    elif r < 0.6:
        raw = json_ticket(rng) if r < 0.45 else random_command(rng)
        desc, fn = f"do_get(ticket={raw!r})", get(raw)
    elif r < 0.75:
        raw = rng.choice([random_command(rng), json_ticket(rng), rng.randbytes(rng.randint(0, 300))])
        call = rng.choice(["get_flight_info", "get_schema"])
        desc = f"{call}(FlightDescriptor.for_command({raw!r}))"
        fn = unary(lambda c: getattr(c, call)(flight.FlightDescriptor.for_command(raw), OPTIONS))
    elif r < 0.82:
        path = [rng.choice(["postgres.logs", "hdfs.logs", "postgres", "logs", "", "..", "events", "x" * 5000,
                            gen_sql.ustr(rng, 5)]) for _ in range(rng.choice([0, 1, 1, 2, 3]))]
        desc = f"get_flight_info(FlightDescriptor.for_path(*{path!r}))"
        fn = unary(lambda c: c.get_flight_info(flight.FlightDescriptor.for_path(*path), OPTIONS))
    elif r < 0.9:
        typ = rng.choice(["CreatePreparedStatement", "ClosePreparedStatement", "", "DropEverything", "x" * 10000,
                          "CancelFlightInfo", "RenewFlightEndpoint"])
        body = rng.choice([pb_str(1, gen_sql.sql(rng)[1]), any_cmd("ActionCreatePreparedStatementRequest", pb_str(1, "SELECT 1")),
                           any_cmd("ActionClosePreparedStatementRequest", pb_bytes(1, rng.randbytes(8))),
                           any_cmd("ActionCreatePreparedStatementRequest", pb_str(1, "SELECT 1") + pb_bytes(2, b"tx")),
                           rng.randbytes(rng.randint(0, 100))])
        desc = f"do_action(Action({typ[:60]!r}, {body!r}))"
        fn = unary(lambda c: list(c.do_action(flight.Action(typ, body), OPTIONS)))
    elif r < 0.95:
        sql = gen_sql.sql(rng)[1]
        desc, fn = f"prepare + do_get({sql!r})", lambda c, t0: prepared(c, sql, t0)
    else:
        cmd = rng.choice([any_cmd("CommandPreparedStatementQuery", pb_bytes(1, rng.randbytes(8))),
                          any_cmd("CommandStatementUpdate", pb_str(1, "DELETE FROM postgres.logs")),
                          any_cmd("CommandStatementIngest", b""), rng.randbytes(10), json_ticket(rng)])
        desc, fn, checks = f"do_put(FlightDescriptor.for_command({cmd!r}), one row)", lambda c, t0: put(c, cmd), [rejected]
    return Case(cid, desc, lambda s, c: flight_call(s, c, fn), checks)


def prepared(client, sql, t0):
    action = flight.Action("CreatePreparedStatement", any_cmd("ActionCreatePreparedStatementRequest", pb_str(1, sql)))
    result = list(client.do_action(action, OPTIONS))
    handle = pb_field(pb_field(result[0].body.to_pybytes(), 2) or b"", 1) or b""
    out = drain(client.do_get(flight.Ticket(any_cmd("CommandPreparedStatementQuery", pb_bytes(1, handle))), OPTIONS), t0)
    close = any_cmd("ActionClosePreparedStatementRequest", pb_bytes(1, handle))
    list(client.do_action(flight.Action("ClosePreparedStatement", close), OPTIONS))
    return out


def put(client, cmd):
    table = pa.table({"$1": pa.array([1], pa.int64())})
    writer, _ = client.do_put(flight.FlightDescriptor.for_command(cmd), table.schema, OPTIONS)
    writer.write_table(table)
    writer.close()
    return 1, ""


def sql_flight_case(rng, cid, kind, sql):
    """Generated SQL over Flight SQL: pyarrow with hand-made commands, or ADBC (prepared,
    with parameters bound through DoPut, when the SQL has placeholders)."""
    # ADBC hands SQL to its Go driver as a C string: a NUL would cut it client-side.
    r = rng.random() * (0.8 if "\x00" in sql else 1)
    checks = [rejected] if kind == "ddl" else []
    if r < 0.6:
        def fn(c, t0):
            info = c.get_flight_info(flight.FlightDescriptor.for_command(statement(sql)), OPTIONS)
            return drain(c.do_get(info.endpoints[0].ticket, OPTIONS), t0)
        return Case(cid, f"Flight SQL CommandStatementQuery: {sql}", lambda s, c: flight_call(s, c, fn), checks)
    if r < 0.7:
        raw = json.dumps({"sql": sql}).encode()
        return Case(cid, f"do_get(ticket={raw!r})", lambda s, c: flight_call(s, c, get(raw)), checks)
    if r < 0.8:
        raw = any_cmd("TicketStatementQuery", pb_str(1, sql))
        return Case(cid, f"do_get(TicketStatementQuery: {sql})", lambda s, c: flight_call(s, c, get(raw)), checks)
    params = None
    if rng.random() < 0.4:
        checks = []
        sql = f"SELECT count(*) FROM {rng.choice(gen_sql.TABLES)} WHERE level = $1 AND id > $2"
        params = tuple(rng.choice(["ERROR", "", "x" * 1000, 1, -2**63, 2**63 - 1, 1.5, None, b"\xff"]) for _ in range(rng.choice([1, 2, 2, 3])))
    return Case(cid, f"ADBC execute({sql!r}, {params!r})", lambda s, c: adbc_call(s, c, sql, params), checks)
