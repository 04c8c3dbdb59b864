"""Spark (pyspark) reading fletch through the Arrow Flight SQL JDBC driver, the way the old
system's Spark jobs would: `spark.read.format("jdbc")` with `dbtable` and `query`, which
makes Spark send its `SELECT * FROM (...) SPARK_GEN_SUBQ_0 WHERE 1=0` schema probe."""

import datetime
from pathlib import Path

import pytest

from conftest import BOTH, JDBC_JAR, PG_ONLY, TOKEN

DRIVER = "org.apache.arrow.driver.jdbc.ArrowFlightJdbcDriver"


@pytest.fixture(scope="module")
def spark(spark):
    """conftest's session Spark, which has the driver on its class path when the jar exists."""
    if not Path(JDBC_JAR).is_file():
        pytest.fail(f"Flight SQL JDBC driver not found at {JDBC_JAR}: run scripts/setup.sh jars or set FLETCH_JDBC_JAR",
                    pytrace=False)
    return spark


def reader(spark, server):
    return spark.read.format("jdbc").option("driver", DRIVER).option("url", server.jdbc_url)


def test_dbtable_read_counts_match_postgres(spark, server, pg):
    df = reader(spark, server).option("dbtable", "postgres.logs").load()
    assert df.columns == ["id", "timestamp", "level", "service", "host", "message", "metadata", "created_at"]
    assert df.count() == pg.scalar("SELECT count(*) FROM logs") == BOTH + PG_ONLY
    assert df.filter(df.level == "ERROR").count() == pg.scalar("SELECT count(*) FROM logs WHERE level = 'ERROR'")


def test_query_read_with_schema_probe(spark, server, pg):
    q = "SELECT id, level, service, created_at FROM hdfs.logs WHERE service = 'user-service'"
    # The JDBC driver reports every integer column as unsigned (it never sets isSigned), so
    # Spark would read BIGINT as decimal(20,0); customSchema restores the Arrow type.
    df = reader(spark, server).option("query", q).option("customSchema", "id BIGINT").load()
    types = dict(df.dtypes)
    assert types["id"] == "bigint" and types["level"] == "string"
    assert types["created_at"] in ("timestamp", "timestamp_ntz"), types
    rows = df.collect()
    assert len(rows) == pg.scalar(f"SELECT count(*) FROM logs WHERE id <= {BOTH} AND service = 'user-service'")
    assert all(isinstance(r.created_at, datetime.datetime) for r in rows[:100])
    # tz-less timestamps arrive unshifted: compare one with PostgreSQL's value (epoch seconds).
    first = min(rows, key=lambda r: r.id)
    want = pg.scalar(f"SELECT (extract(epoch FROM created_at) * 1000000)::int8 FROM logs WHERE id = {first.id}")
    got = first.created_at.replace(tzinfo=datetime.timezone.utc).timestamp() * 1_000_000
    assert abs(got - want) < 1, (first.created_at, want)


def test_aggregate_and_join_queries(spark, server, pg):
    agg = reader(spark, server).option(
        "query", "SELECT level, count(*) AS n FROM postgres.logs GROUP BY level"
    ).load().collect()
    assert {r.level: r.n for r in agg} == {
        level: pg.scalar(f"SELECT count(*) FROM logs WHERE level = '{level}'") for level in ("INFO", "DEBUG", "WARN", "ERROR")
    }
    join = reader(spark, server).option(
        "query", "SELECT p.id, h.level FROM postgres.logs p JOIN hdfs.logs h ON p.id = h.id WHERE p.level = 'WARN'"
    ).load()
    assert join.count() == pg.scalar(f"SELECT count(*) FROM logs WHERE level = 'WARN' AND id <= {BOTH}")


def test_partitioned_read(spark, server, pg):
    df = (
        reader(spark, server)
        .option("dbtable", "postgres.logs")
        .option("partitionColumn", "id")
        .option("lowerBound", "1")
        .option("upperBound", str(BOTH + PG_ONLY))
        .option("numPartitions", "4")
        .load()
    )
    assert df.rdd.getNumPartitions() == 4
    assert df.count() == BOTH + PG_ONLY


def test_auth_with_user_password_and_token(spark, locked_server, pg):
    want = pg.scalar("SELECT count(*) FROM logs WHERE level = 'ERROR'")
    q = "SELECT id FROM postgres.logs WHERE level = 'ERROR'"
    by_password = reader(spark, locked_server).option("user", "spark").option("password", TOKEN).option("query", q).load()
    assert by_password.count() == want
    by_token = (spark.read.format("jdbc").option("driver", DRIVER)
                .option("url", f"{locked_server.jdbc_url}&token={TOKEN}").option("query", q).load())
    assert by_token.count() == want
    with pytest.raises(Exception, match="(?i)unauthenticated|auth"):
        reader(spark, locked_server).option("query", q).load()
