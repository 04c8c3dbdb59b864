"""pyarrow.flight against fletch's plain Flight: list, info, schema, do_get, JSON tickets."""

import json

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from conftest import BOTH, PG_ONLY, TOKEN

LOGS_COLUMNS = ["id", "timestamp", "level", "service", "host", "message", "metadata", "created_at"]


@pytest.fixture
def client(server):
    c = flight.connect(server.grpc)
    yield c
    c.close()


def ticket(**t):
    return flight.Ticket(json.dumps(t).encode())


def test_list_flights_names_both_datasets(client):
    infos = list(client.list_flights())
    names = [".".join(p.decode() if isinstance(p, bytes) else p for p in i.descriptor.path) for i in infos]
    assert names == ["postgres.logs", "hdfs.logs"]
    for i in infos:
        assert i.schema.names == LOGS_COLUMNS


@pytest.mark.parametrize("name,rows", [("postgres.logs", BOTH + PG_ONLY), ("hdfs.logs", BOTH)])
def test_info_schema_and_do_get_by_path(client, name, rows):
    d = flight.FlightDescriptor.for_path(name)
    schema = client.get_schema(d).schema
    assert schema.names == LOGS_COLUMNS
    assert schema.field("created_at").type == pa.timestamp("us")
    info = client.get_flight_info(d)
    assert info.schema == schema
    table = client.do_get(info.endpoints[0].ticket).read_all()
    assert table.num_rows == rows
    assert table.schema.names == LOGS_COLUMNS


def test_command_descriptor_with_filters_matches_postgres(client, pg):
    cmd = {"source": "postgres", "kind": "logs", "params": {"level": "ERROR", "host": "worker-1", "limit": 10000}}
    info = client.get_flight_info(flight.FlightDescriptor.for_command(json.dumps(cmd)))
    table = client.do_get(info.endpoints[0].ticket).read_all()
    assert table.num_rows == pg.scalar("SELECT count(*) FROM logs WHERE level='ERROR' AND host='worker-1'")
    assert set(table.column("level").to_pylist()) == {"ERROR"}
    ts = table.column("timestamp").to_pylist()
    assert ts == sorted(ts, reverse=True), "newest first, as the HTTP API"


def test_aggregate_and_stats_tickets(client, pg):
    t = client.do_get(ticket(source="hdfs", kind="aggregate", params={"group_by": "service"})).read_all()
    got = dict(zip(t.column("key").to_pylist(), t.column("count").to_pylist()))
    for service, n in got.items():
        assert n == pg.scalar(f"SELECT count(*) FROM logs WHERE id <= {BOTH} AND service = '{service}'")
    assert sum(got.values()) == BOTH
    s = client.do_get(ticket(source="postgres", kind="stats")).read_all()
    assert s.column("logs_count").to_pylist() == [BOTH + PG_ONLY]


def test_zero_rows_still_carry_the_schema(client):
    reader = client.do_get(ticket(source="postgres", kind="export", params={"level": "NOPE"}))
    table = reader.read_all()
    assert table.num_rows == 0
    assert table.schema.names == LOGS_COLUMNS


def test_sql_ticket(client, pg):
    t = client.do_get(ticket(sql="SELECT count(*) AS n FROM postgres.logs WHERE level = 'WARN'")).read_all()
    assert t.column("n").to_pylist() == [pg.scalar("SELECT count(*) FROM logs WHERE level = 'WARN'")]


def engine(value):
    return flight.FlightCallOptions(headers=[(b"x-fletch-engine", value.encode())])


def test_sql_ticket_engine_header(client, pg):
    """The x-fletch-engine call header chooses where SQL runs, as "engine" does over HTTP;
    this server has no Ballista scheduler, so only auto and local can run."""
    sql = ticket(sql="SELECT count(*) AS n FROM postgres.logs WHERE level = 'WARN'")
    want = [pg.scalar("SELECT count(*) FROM logs WHERE level = 'WARN'")]
    for value in ("local", "auto"):
        assert client.do_get(sql, options=engine(value)).read_all().column("n").to_pylist() == want
    with pytest.raises(pa.ArrowInvalid, match=r"\[ballista\] scheduler"):
        client.do_get(sql, options=engine("ballista")).read_all()
    with pytest.raises(pa.ArrowInvalid, match="unknown engine `spark`"):
        client.do_get(sql, options=engine("spark")).read_all()
    descriptor = flight.FlightDescriptor.for_command(json.dumps({"sql": "SELECT 1 AS one"}).encode())
    with pytest.raises(pa.ArrowInvalid, match="unknown engine `spark`"):
        client.get_flight_info(descriptor, options=engine("spark"))


@pytest.mark.parametrize("bad,param", [
    ({"source": "hdfs", "kind": "aggregate", "params": {"group_by": "colour"}}, "group_by"),
    ({"source": "postgres", "kind": "logs", "params": {"limit": 0}}, "limit"),
    ({"source": "postgres", "kind": "logs", "params": {"start_time": "yesterday"}}, "start_time"),
    ({"source": "postgres", "kind": "logs", "params": {"lvl": "ERROR"}}, "lvl"),
    ({"source": "s3", "kind": "logs"}, "source"),
])
def test_bad_tickets_name_the_parameter(client, bad, param):
    # INVALID_ARGUMENT surfaces in pyarrow as ArrowInvalid.
    with pytest.raises(pa.ArrowInvalid, match=param):
        client.do_get(ticket(**bad)).read_all()


def test_auth_basic_handshake_gives_a_bearer_token(locked_server):
    c = flight.connect(locked_server.grpc)
    with pytest.raises(flight.FlightUnauthenticatedError):
        list(c.list_flights())
    with pytest.raises(flight.FlightUnauthenticatedError):
        c.authenticate_basic_token("alice", "wrong")
    header = c.authenticate_basic_token("alice", TOKEN)
    assert header == (b"authorization", f"Bearer {TOKEN}".encode())
    opts = flight.FlightCallOptions(headers=[header])
    assert len(list(c.list_flights(options=opts))) == 2
    c.close()
