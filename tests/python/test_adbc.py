"""ADBC (adbc-driver-flightsql) against fletch's Flight SQL: statements, prepared
statements, catalog metadata, a join across the two sources, auth."""

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flightsql
import pyarrow as pa
import pytest

from conftest import BOTH, PG_ONLY, TOKEN


@pytest.fixture
def conn(server):
    c = flightsql.connect(server.grpc, autocommit=True)
    yield c
    c.close()


def scalar(conn, sql, parameters=None):
    with conn.cursor() as cur:
        cur.execute(sql, parameters)
        return cur.fetch_arrow_table().column(0).to_pylist()[0]


def test_statement_counts_match_postgres(conn, pg):
    assert scalar(conn, "SELECT count(*) FROM postgres.logs") == BOTH + PG_ONLY
    assert scalar(conn, "SELECT count(*) FROM hdfs.logs") == BOTH
    want = pg.scalar("SELECT count(*) FROM logs WHERE level = 'ERROR' AND service = 'payment-service'")
    assert scalar(conn, "SELECT count(*) FROM postgres.logs WHERE level = 'ERROR' AND service = 'payment-service'") == want


def test_rows_and_types(conn):
    with conn.cursor() as cur:
        cur.execute('SELECT id, "timestamp", level, metadata, created_at FROM postgres.logs ORDER BY id LIMIT 100')
        t = cur.fetch_arrow_table()
    assert t.num_rows == 100
    assert t.column("id").to_pylist() == list(range(1, 101))
    assert t.schema.field("created_at").type == pa.timestamp("us")
    assert t.schema.field("timestamp").type == pa.float64()
    assert t.schema.field("level").type == pa.string()


def test_prepared_statement_with_parameters(conn, pg):
    sql = "SELECT count(*) FROM postgres.logs WHERE level = $1 AND id > $2"
    for level, min_id in [("ERROR", 0), ("INFO", 25_000)]:
        want = pg.scalar(f"SELECT count(*) FROM logs WHERE level = '{level}' AND id > {min_id}")
        assert scalar(conn, sql, (level, min_id)) == want


def test_adbc_prepare_reports_schemas(conn):
    with conn.cursor() as cur:
        cur.adbc_prepare("SELECT level, count(*) AS n FROM hdfs.logs GROUP BY level")
        cur.execute("SELECT level, count(*) AS n FROM hdfs.logs GROUP BY level")
        t = cur.fetch_arrow_table()
    assert t.schema.names == ["level", "n"]
    assert sum(t.column("n").to_pylist()) == BOTH


def test_join_across_sources_matches_postgres(conn, pg):
    sql = ("SELECT p.level, count(*) AS n FROM postgres.logs p JOIN hdfs.logs h ON p.id = h.id "
           "WHERE h.host = 'worker-3' GROUP BY p.level ORDER BY p.level")
    with conn.cursor() as cur:
        cur.execute(sql)
        t = cur.fetch_arrow_table()
    got = dict(zip(t.column("level").to_pylist(), t.column("n").to_pylist()))
    assert got
    for level, n in got.items():
        assert n == pg.scalar(f"SELECT count(*) FROM logs WHERE id <= {BOTH} AND host = 'worker-3' AND level = '{level}'")


def test_zero_rows_keep_the_schema(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT * FROM (SELECT id, created_at FROM hdfs.logs) SPARK_GEN_SUBQ_0 WHERE 1=0")
        t = cur.fetch_arrow_table()
    assert t.num_rows == 0
    assert t.schema.names == ["id", "created_at"]


def test_catalog_metadata(conn):
    objects = conn.adbc_get_objects(depth="columns", catalog_filter="fletch").read_all().to_pylist()
    assert [c["catalog_name"] for c in objects] == ["fletch"]
    tables = {
        (s["db_schema_name"], t["table_name"]): [col["column_name"] for col in t["table_columns"]]
        for s in objects[0]["catalog_db_schemas"]
        for t in (s["db_schema_tables"] or [])
    }
    cols = ["id", "timestamp", "level", "service", "host", "message", "metadata", "created_at"]
    assert tables[("postgres", "logs")] == cols
    assert tables[("hdfs", "logs")] == cols
    assert "TABLE" in conn.adbc_get_table_types()
    assert conn.adbc_get_table_schema("logs", db_schema_filter="postgres").names == cols


def test_sql_errors_are_reported(conn):
    with conn.cursor() as cur:
        with pytest.raises(flightsql.ProgrammingError, match="nope"):
            cur.execute("SELECT nope FROM postgres.logs")


def test_auth(locked_server):
    with pytest.raises(flightsql.Error):
        c = flightsql.connect(locked_server.grpc, autocommit=True)
        try:
            with c.cursor() as cur:
                cur.execute("SELECT 1")
        finally:
            c.close()
    opts = {adbc_driver_flightsql.DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {TOKEN}"}
    with flightsql.connect(locked_server.grpc, db_kwargs=opts, autocommit=True) as c:
        assert scalar(c, "SELECT count(*) FROM hdfs.logs") == BOTH
    # username/password: ADBC does the Basic handshake and keeps the bearer token it gets.
    creds = {"username": "alice", "password": TOKEN}
    with flightsql.connect(locked_server.grpc, db_kwargs=creds, autocommit=True) as c:
        assert scalar(c, "SELECT count(*) FROM postgres.logs") == BOTH + PG_ONLY
