//! Arrow Flight, Flight SQL and `POST /api/sql` against the real server on real sockets,
//! over a real PostgreSQL and a `file://` Parquet directory written by fletch's loader.
//!
//! Data: `BOTH` rows in PostgreSQL and Parquet (same ids), then `PG_ONLY` more rows in
//! PostgreSQL only, so a join across the two sources has a known answer that differs from
//! either table's size. Every count is checked against PostgreSQL directly.

mod common;

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, Int64Array, RecordBatch, StringArray};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Int64Type, Schema, SchemaRef};
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{CommandGetDbSchemas, CommandGetTables, SqlInfo};
use arrow_flight::{FlightClient, FlightDescriptor, FlightInfo, Ticket};
use common::*;
use futures::TryStreamExt;
use tonic::transport::Channel;

const BOTH: u64 = 20_000;
const PG_ONLY: u64 = 40_000;
const TOKEN: &str = "t0ken-for-tests";

struct Env {
    pg_url: String,
    open: TestServer,
    locked: TestServer,
    /// One export permit per source and a short queue budget.
    tight: TestServer,
    /// `[flight] direct_do_get = false`: DoGet through tonic's generic encoder.
    via_tonic: TestServer,
}

fn env() -> &'static Env {
    static E: OnceLock<Env> = OnceLock::new();
    E.get_or_init(|| {
        let (pg_url, parquet_url) = off_runtime(load_data);
        let mut c = pg_config(&pg_url);
        c.parquet.url = parquet_url;
        let open = boot_with_flight(c.clone());
        let mut t = c.clone();
        t.admission.export_permits = 1;
        t.admission.queue_timeout_ms = 300;
        let tight = boot_with_flight(t);
        let mut v = c.clone();
        v.flight.direct_do_get = false;
        let via_tonic = boot_with_flight(v);
        c.auth.tokens = vec![TOKEN.to_string()];
        let locked = boot_with_flight(c);
        Env { pg_url, open, locked, tight, via_tonic }
    })
}

/// A fresh database and Parquet directory with the rows described in the module docs.
fn load_data() -> (String, String) {
    let url = empty_database("flight_sql");
    let dir = std::env::temp_dir().join("fletch-flight-sql-parquet");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let parquet_url = format!("file://{}", dir.display());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let both = fletch::load::LoadOptions {
            pg_url: Some(url.clone()),
            parquet_url: Some(parquet_url.clone()),
            rows: BOTH,
            seed: 7,
            file_rows: 8_000,
            progress: false,
            ..Default::default()
        };
        fletch::load::run(both).await.expect("load both");
        let pg_only = fletch::load::LoadOptions {
            pg_url: Some(url.clone()),
            rows: PG_ONLY,
            seed: 8,
            progress: false,
            ..Default::default()
        };
        let r = fletch::load::run(pg_only).await.expect("load postgres");
        assert_eq!(r.pg_total, Some((BOTH + PG_ONLY) as i64));
    });
    (url, parquet_url)
}

async fn flight(addr: SocketAddr) -> FlightClient {
    FlightClient::new(channel(addr).await)
}

async fn flight_sql(addr: SocketAddr) -> FlightSqlServiceClient<Channel> {
    FlightSqlServiceClient::new(channel(addr).await)
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

/// All batches of the first endpoint, and the schema the stream announced.
async fn fetch(client: &mut FlightClient, ticket: Ticket) -> (SchemaRef, Vec<RecordBatch>) {
    let mut s = client.do_get(ticket).await.expect("do_get");
    let mut out = Vec::new();
    while let Some(b) = s.try_next().await.expect("stream") {
        out.push(b);
    }
    (s.schema().expect("schema message always sent").clone(), out)
}

async fn fetch_sql(client: &mut FlightSqlServiceClient<Channel>, info: FlightInfo) -> (SchemaRef, Vec<RecordBatch>) {
    let ticket = info.endpoint[0].ticket.clone().expect("ticket");
    let mut s = client.do_get(ticket).await.expect("do_get");
    let mut out = Vec::new();
    while let Some(b) = s.try_next().await.expect("stream") {
        out.push(b);
    }
    (s.schema().expect("schema message always sent").clone(), out)
}

async fn sql_rows(addr: SocketAddr, sql: &str) -> (SchemaRef, Vec<RecordBatch>) {
    let mut c = flight_sql(addr).await;
    let info = c.execute(sql.to_string(), None).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    fetch_sql(&mut c, info).await
}

fn single_i64(batches: &[RecordBatch]) -> i64 {
    let b = batches.iter().find(|b| b.num_rows() > 0).expect("a row");
    b.column(0).as_primitive::<Int64Type>().value(0)
}

fn assert_logs_schema(schema: &Schema) {
    let expected = fletch::schema::logs_schema();
    let names: Vec<_> = schema.fields().iter().map(|f| (f.name().clone(), f.data_type().clone())).collect();
    let want: Vec<_> = expected.fields().iter().map(|f| (f.name().clone(), f.data_type().clone())).collect();
    assert_eq!(names, want);
}

#[tokio::test]
async fn list_info_schema_and_do_get_by_path() {
    let e = env();
    let mut c = flight(e.open.flight()).await;
    let infos: Vec<FlightInfo> = c.list_flights(bytes::Bytes::new()).await.unwrap().try_collect().await.unwrap();
    let names: Vec<String> = infos.iter().map(|i| i.flight_descriptor.as_ref().unwrap().path.join(".")).collect();
    assert_eq!(names, vec!["postgres.logs", "hdfs.logs"]);
    for (name, expected) in [("postgres.logs", (BOTH + PG_ONLY) as usize), ("hdfs.logs", BOTH as usize)] {
        let d = FlightDescriptor::new_path(vec![name.to_string()]);
        assert_logs_schema(&c.get_schema(d.clone()).await.unwrap());
        let info = c.get_flight_info(d).await.unwrap();
        assert_logs_schema(&info.clone().try_decode_schema().unwrap());
        let (schema, batches) = fetch(&mut c, info.endpoint[0].ticket.clone().unwrap()).await;
        assert_logs_schema(&schema);
        assert_eq!(rows(&batches), expected, "{name}");
    }
    let missing = c.get_flight_info(FlightDescriptor::new_path(vec!["events".into()])).await.unwrap_err();
    assert!(missing.to_string().contains("no dataset `events`"), "{missing}");
}

#[tokio::test]
async fn json_tickets_are_the_http_queries() {
    let e = env();
    let mut c = flight(e.open.flight()).await;
    // A page with filters: same validation and semantics as /api/query/postgres/logs.
    let cmd = r#"{"source":"postgres","kind":"logs","params":{"level":"ERROR","service":"api-gateway","limit":50}}"#;
    let info = c.get_flight_info(FlightDescriptor::new_cmd(cmd)).await.unwrap();
    let (schema, batches) = fetch(&mut c, info.endpoint[0].ticket.clone().unwrap()).await;
    assert_logs_schema(&schema);
    let expected = sql_i64(&e.pg_url, "SELECT count(*) FROM logs WHERE level='ERROR' AND service='api-gateway'").await;
    assert_eq!(rows(&batches) as i64, expected.min(50));
    for b in &batches {
        let lv = b.column_by_name("level").unwrap().as_string::<i32>();
        assert!((0..b.num_rows()).all(|i| lv.value(i) == "ERROR"));
    }
    // Aggregate over Parquet equals the same aggregate in PostgreSQL over the shared ids.
    let t = Ticket::new(r#"{"source":"hdfs","kind":"aggregate","params":{"group_by":"level"}}"#);
    let (_, batches) = fetch(&mut c, t).await;
    let b = &batches[0];
    let (keys, counts) = (b.column(0).as_string::<i32>(), b.column(1).as_primitive::<Int64Type>());
    for i in 0..b.num_rows() {
        let want = sql_i64(
            &e.pg_url,
            &format!("SELECT count(*) FROM logs WHERE id <= {BOTH} AND level = '{}'", keys.value(i)),
        )
        .await;
        assert_eq!(counts.value(i), want, "level {}", keys.value(i));
    }
    let (_, batches) = fetch(&mut c, Ticket::new(r#"{"source":"postgres","kind":"stats"}"#)).await;
    let logs_count = batches[0].column_by_name("logs_count").unwrap().as_primitive::<Int64Type>().value(0);
    assert_eq!(logs_count, (BOTH + PG_ONLY) as i64);
    // Zero rows: the schema still arrives.
    let t = Ticket::new(r#"{"source":"hdfs","kind":"export","params":{"level":"NOPE"}}"#);
    let (schema, batches) = fetch(&mut c, t).await;
    assert_logs_schema(&schema);
    assert_eq!(rows(&batches), 0);
}

#[tokio::test]
async fn bad_tickets_are_invalid_argument_naming_the_parameter() {
    let e = env();
    let mut c = flight(e.open.flight()).await;
    for (ticket, needle) in [
        (r#"{"source":"hdfs","kind":"aggregate","params":{"group_by":"color"}}"#, "group_by"),
        (r#"{"source":"postgres","kind":"logs","params":{"limit":"20000"}}"#, "limit"),
        (r#"{"source":"postgres","kind":"logs","params":{"levle":"ERROR"}}"#, "levle"),
        (r#"{"source":"oracle","kind":"logs"}"#, "source"),
        (r#"{"source":"hdfs","kind":"tail"}"#, "kind"),
        ("not json at all", "Flight SQL command"),
    ] {
        let err = match c.do_get(Ticket::new(ticket)).await {
            Ok(s) => s.try_collect::<Vec<_>>().await.expect_err(ticket),
            Err(e) => e,
        };
        let status = match err {
            arrow_flight::error::FlightError::Tonic(s) => *s,
            other => panic!("{ticket}: {other}"),
        };
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{ticket}: {status:?}");
        assert!(status.message().contains(needle), "{ticket}: {}", status.message());
    }
}

/// The hand-framed DoGet and tonic's encoder must be indistinguishable to a client.
#[tokio::test]
async fn direct_do_get_matches_tonic_encoding() {
    let e = env();
    let (mut direct, mut tonic) = (flight(e.open.flight()).await, flight(e.via_tonic.flight()).await);
    for ticket in [
        r#"{"source":"hdfs","kind":"export","params":{"order_dir":"asc"}}"#,
        r#"{"source":"postgres","kind":"logs","params":{"level":"ERROR","limit":"500"}}"#,
        r#"{"source":"hdfs","kind":"aggregate","params":{"group_by":"service"}}"#,
        r#"{"sql":"SELECT p.id, h.message FROM postgres.logs p JOIN hdfs.logs h ON p.id = h.id ORDER BY p.id LIMIT 3000"}"#,
        r#"{"sql":"SELECT * FROM hdfs.logs WHERE 1 = 0"}"#,
    ] {
        let (schema_a, a) = fetch(&mut direct, Ticket::new(ticket)).await;
        let (schema_b, b) = fetch(&mut tonic, Ticket::new(ticket)).await;
        assert_eq!(schema_a, schema_b, "{ticket}");
        let (a, b) = (concat_batches(&schema_a, &a).unwrap(), concat_batches(&schema_b, &b).unwrap());
        assert_eq!(a, b, "{ticket}");
        assert!(a.num_rows() > 0 || ticket.contains("1 = 0"), "{ticket}: no rows to compare");
    }
}

#[tokio::test]
async fn statement_queries_on_both_sources() {
    let e = env();
    let (_, b) =
        sql_rows(e.open.flight(), "SELECT count(*) FROM postgres.logs WHERE level = 'ERROR' AND id > 100").await;
    let want = sql_i64(&e.pg_url, "SELECT count(*) FROM logs WHERE level = 'ERROR' AND id > 100").await;
    assert_eq!(single_i64(&b), want);
    let (_, b) = sql_rows(e.open.flight(), "SELECT count(*) FROM hdfs.logs WHERE level = 'ERROR'").await;
    let want = sql_i64(&e.pg_url, &format!("SELECT count(*) FROM logs WHERE level = 'ERROR' AND id <= {BOTH}")).await;
    assert_eq!(single_i64(&b), want);
    // Rows, tz-less timestamps and a limit pushed to PostgreSQL.
    let (schema, b) = sql_rows(
        e.open.flight(),
        r#"SELECT id, "timestamp", created_at, metadata FROM postgres.logs WHERE service = 'order-service' LIMIT 7"#,
    )
    .await;
    assert_eq!(rows(&b), 7);
    assert_eq!(schema.field(2).data_type(), &DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None));
    assert_eq!(schema.field(3).data_type(), &DataType::Utf8);
}

#[tokio::test]
async fn join_across_sources_matches_postgres() {
    let e = env();
    let sql = "SELECT count(*) FROM postgres.logs p JOIN hdfs.logs h ON p.id = h.id \
               WHERE p.level = 'ERROR' AND h.service = p.service";
    let (_, b) = sql_rows(e.open.flight(), sql).await;
    let want = sql_i64(&e.pg_url, &format!("SELECT count(*) FROM logs WHERE level = 'ERROR' AND id <= {BOTH}")).await;
    assert!(want > 0);
    assert_eq!(single_i64(&b), want);
}

/// `fletch_source_executions_total{source="postgres",kind="sql_pushdown"}`.
async fn pushdowns(srv: &TestServer) -> f64 {
    executions(srv, "postgres", "sql_pushdown").await
}

/// `fletch_source_executions_total{source, kind}` of `srv`.
async fn executions(srv: &TestServer, source: &str, kind: &str) -> f64 {
    let text = reqwest::get(format!("http://{}/metrics", srv.http)).await.unwrap().text().await.unwrap();
    let prefix = format!("fletch_source_executions_total{{source=\"{source}\",kind=\"{kind}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(prefix.as_str())).map(|v| v.trim().parse().unwrap()).unwrap_or(0.0)
}

/// `(label, count)` rows of a two-column result, in order (NULL label as "NULL").
fn label_counts(batches: &[RecordBatch]) -> Vec<(String, i64)> {
    batches
        .iter()
        .flat_map(|b| {
            let (k, n) = (b.column(0).as_string::<i32>(), b.column(1).as_primitive::<Int64Type>());
            (0..b.num_rows())
                .map(move |i| (if k.is_valid(i) { k.value(i).to_string() } else { "NULL".into() }, n.value(i)))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn label_aggregates_over_hdfs_come_from_rollups() {
    let e = env();
    // hdfs.logs holds exactly the rows of postgres.logs with id <= BOTH.
    let queries = [
        ("service, count(*) AS n", "level = 'ERROR'", "GROUP BY service ORDER BY n DESC, service"),
        ("level, count(1)", "", "GROUP BY level ORDER BY level"),
        ("host, count(*)", "service = 'api-gateway' AND host = 'worker-1'", "GROUP BY host"),
        ("service, count(*) AS n", "", "GROUP BY service HAVING count(*) > 1000 ORDER BY service"),
        ("level, count(*)", "level = 'NOPE'", "GROUP BY level"),
    ];
    let before = executions(&e.open, "hdfs", "sql_rollup").await;
    for (select, filter, rest) in queries {
        let hdfs_where = if filter.is_empty() { String::new() } else { format!("WHERE {filter}") };
        let pg_where =
            if filter.is_empty() { format!("WHERE id <= {BOTH}") } else { format!("WHERE id <= {BOTH} AND {filter}") };
        let (schema, h) =
            sql_rows(e.open.flight(), &format!("SELECT {select} FROM hdfs.logs {hdfs_where} {rest}")).await;
        let (_, p) = sql_rows(e.open.flight(), &format!("SELECT {select} FROM postgres.logs {pg_where} {rest}")).await;
        assert_eq!(schema.field(1).data_type(), &DataType::Int64, "{select}");
        assert_eq!(label_counts(&h), label_counts(&p), "{select} {filter} {rest}");
    }
    assert_eq!(executions(&e.open, "hdfs", "sql_rollup").await, before + queries.len() as f64, "answered from rollups");

    // A time bound is left to the scan, with the same answer.
    let before = executions(&e.open, "hdfs", "sql_rollup").await;
    let bound = "\"timestamp\" >= 1735689700";
    let (_, h) = sql_rows(
        e.open.flight(),
        &format!("SELECT level, count(*) FROM hdfs.logs WHERE {bound} GROUP BY level ORDER BY level"),
    )
    .await;
    let (_, p) = sql_rows(
        e.open.flight(),
        &format!(
            "SELECT level, count(*) FROM postgres.logs WHERE id <= {BOTH} AND {bound} GROUP BY level ORDER BY level"
        ),
    )
    .await;
    assert!(!label_counts(&h).is_empty());
    assert_eq!(label_counts(&h), label_counts(&p));
    assert_eq!(executions(&e.open, "hdfs", "sql_rollup").await, before, "time bounds must scan");
}

#[tokio::test]
async fn aggregates_over_postgres_run_in_postgres() {
    let e = env();
    // GROUP BY + ORDER BY over postgres only: PostgreSQL runs the whole query, and the
    // columns keep the names and types DataFusion planned.
    let before = pushdowns(&e.open).await;
    let sql = "SELECT service, count(*) AS n, max(\"timestamp\") FROM postgres.logs WHERE level = 'ERROR' GROUP BY service ORDER BY n DESC, service";
    let (schema, b) = sql_rows(e.open.flight(), sql).await;
    assert_eq!(pushdowns(&e.open).await, before + 1.0, "the aggregate was not pushed down");
    assert_eq!(schema.field(0).name(), "service");
    assert_eq!(schema.field(1).name(), "n");
    assert_eq!(schema.field(1).data_type(), &DataType::Int64);
    assert_eq!(schema.field(2).data_type(), &DataType::Float64);
    let got = label_counts(&b);
    assert_eq!(got.len(), 4);
    for (service, n) in &got {
        let want =
            sql_i64(&e.pg_url, &format!("SELECT count(*) FROM logs WHERE level = 'ERROR' AND service = '{service}'"))
                .await;
        assert_eq!(*n, want, "{service}");
    }
    assert!(got.windows(2).all(|w| w[0].1 >= w[1].1), "ORDER BY n DESC: {got:?}");

    // PostgreSQL's sum(bigint) is numeric, which does not map: DataFusion answers instead,
    // with the same result.
    let before = pushdowns(&e.open).await;
    let (_, b) = sql_rows(e.open.flight(), "SELECT sum(id) FROM postgres.logs WHERE id <= 1000").await;
    assert_eq!(pushdowns(&e.open).await, before, "numeric result must fall back to DataFusion");
    assert_eq!(single_i64(&b), 500_500);
    // Scans without aggregates stay with the table provider.
    let before = pushdowns(&e.open).await;
    let (_, b) = sql_rows(e.open.flight(), "SELECT id FROM postgres.logs WHERE id <= 10").await;
    assert_eq!(rows(&b), 10);
    assert_eq!(pushdowns(&e.open).await, before);
}

#[tokio::test]
async fn zero_rows_still_send_the_schema() {
    let e = env();
    // Spark's JDBC schema probe, and a filter PostgreSQL answers with nothing.
    for sql in [
        "SELECT * FROM (SELECT id, level, created_at FROM postgres.logs) SPARK_GEN_SUBQ_0 WHERE 1=0",
        "SELECT id, level, created_at FROM postgres.logs WHERE level = 'NOPE'",
        "SELECT id, level, created_at FROM hdfs.logs WHERE level = 'NOPE'",
    ] {
        let (schema, b) = sql_rows(e.open.flight(), sql).await;
        assert_eq!(rows(&b), 0, "{sql}");
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["id", "level", "created_at"], "{sql}");
    }
}

#[tokio::test]
async fn prepared_statements_with_and_without_parameters() {
    let e = env();
    let mut c = flight_sql(e.open.flight()).await;
    let mut p = c.prepare("SELECT id, level FROM postgres.logs ORDER BY id LIMIT 5".into(), None).await.unwrap();
    let names: Vec<String> = p.dataset_schema().unwrap().fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(names, ["id", "level"], "dataset schema must be filled in (JDBC reads an empty one as an update)");
    let info = p.execute().await.unwrap();
    let (_, b) = fetch_sql(&mut c, info).await;
    let ids: Vec<i64> = b.iter().flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec()).collect();
    assert_eq!(ids, vec![1, 2, 3, 4, 5]);
    p.close().await.unwrap();

    let mut p =
        c.prepare("SELECT count(*) FROM postgres.logs WHERE level = $1 AND id > $2".into(), None).await.unwrap();
    assert_eq!(p.parameter_schema().unwrap().fields().len(), 2);
    let params = RecordBatch::try_from_iter(vec![
        ("a", std::sync::Arc::new(StringArray::from(vec!["WARN"])) as _),
        ("b", std::sync::Arc::new(Int64Array::from(vec![1000])) as _),
    ])
    .unwrap();
    p.set_parameters(params).unwrap();
    let info = p.execute().await.unwrap();
    let (_, b) = fetch_sql(&mut c, info).await;
    assert_eq!(
        single_i64(&b),
        sql_i64(&e.pg_url, "SELECT count(*) FROM logs WHERE level = 'WARN' AND id > 1000").await
    );
    p.close().await.unwrap();
}

#[tokio::test]
async fn catalog_calls_describe_both_sources() {
    let e = env();
    let mut c = flight_sql(e.open.flight()).await;
    let info = c.get_catalogs().await.unwrap();
    let (_, b) = fetch_sql(&mut c, info).await;
    assert_eq!(b[0].column(0).as_string::<i32>().value(0), "fletch");

    let info = c
        .get_db_schemas(CommandGetDbSchemas { catalog: Some("fletch".into()), db_schema_filter_pattern: None })
        .await
        .unwrap();
    let (_, b) = fetch_sql(&mut c, info).await;
    let schemas: Vec<&str> =
        b.iter().flat_map(|b| b.column(1).as_string::<i32>().iter().flatten().collect::<Vec<_>>()).collect();
    assert!(schemas.contains(&"postgres") && schemas.contains(&"hdfs"), "{schemas:?}");

    let req = CommandGetTables {
        catalog: Some("fletch".into()),
        db_schema_filter_pattern: None,
        table_name_filter_pattern: Some("log%".into()),
        table_types: vec!["TABLE".into()],
        include_schema: true,
    };
    let info = c.get_tables(req).await.unwrap();
    let (_, b) = fetch_sql(&mut c, info).await;
    let b = &b[0];
    let found: Vec<String> = (0..b.num_rows())
        .map(|i| format!("{}.{}", b.column(1).as_string::<i32>().value(i), b.column(2).as_string::<i32>().value(i)))
        .collect();
    assert_eq!(found, ["hdfs.logs", "postgres.logs"]);
    let ipc = b.column(4).as_binary::<i32>().value(0);
    let schema = arrow::ipc::convert::try_schema_from_ipc_buffer(ipc).unwrap();
    assert_logs_schema(&schema);

    let info = c.get_table_types().await.unwrap();
    let (_, b) = fetch_sql(&mut c, info).await;
    assert!(b[0].column(0).as_string::<i32>().iter().any(|t| t == Some("TABLE")));

    let info = c.get_sql_info(vec![SqlInfo::FlightSqlServerName, SqlInfo::FlightSqlServerReadOnly]).await.unwrap();
    let (_, b) = fetch_sql(&mut c, info).await;
    assert_eq!(rows(&b), 2);
}

#[tokio::test]
async fn exact_filters_and_limits_are_pushed_to_postgres() {
    let e = env();
    let plan = |sql: &str| format!("EXPLAIN {sql}");
    let text = |b: &[RecordBatch]| {
        b.iter()
            .flat_map(|b| b.column(1).as_string::<i32>().iter().flatten().map(str::to_string).collect::<Vec<_>>())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let (_, b) =
        sql_rows(e.open.flight(), &plan("SELECT id FROM postgres.logs WHERE level = 'ERROR' AND id >= 10 LIMIT 3"))
            .await;
    let p = text(&b);
    assert!(!p.contains("FilterExec"), "exact filters must not be re-applied:\n{p}");
    assert!(
        p.lines().any(|l| l.contains("TableScan: postgres.logs") && l.contains("full_filters=")),
        "filters must be exact:\n{p}"
    );
    assert!(p.lines().any(|l| l.contains("PgScanExec") && l.contains(" LIMIT $")), "limit must reach the scan:\n{p}");
    let (_, b) = sql_rows(
        e.open.flight(),
        &plan("SELECT id FROM postgres.logs WHERE level = 'ERROR' AND message LIKE '%timeout%'"),
    )
    .await;
    let p = text(&b);
    assert!(p.contains("FilterExec"), "LIKE is not pushed, DataFusion must filter:\n{p}");
    // And the answers are right in both cases.
    let (_, b) = sql_rows(e.open.flight(), "SELECT count(*) FROM postgres.logs WHERE level = 'ERROR' AND message LIKE '%a%' AND \"timestamp\" < 1735700000.5").await;
    let want = sql_i64(
        &e.pg_url,
        "SELECT count(*) FROM logs WHERE level = 'ERROR' AND message LIKE '%a%' AND \"timestamp\" < 1735700000.5",
    )
    .await;
    assert_eq!(single_i64(&b), want);
}

#[tokio::test]
async fn sql_errors_are_invalid_argument() {
    let e = env();
    let mut c = flight_sql(e.open.flight()).await;
    for sql in ["SELEC 1", "SELECT nope FROM postgres.logs", "SELECT * FROM logs", "DROP TABLE postgres.logs"] {
        let err = c.execute(sql.into(), None).await.expect_err(sql);
        assert!(
            err.to_string().contains("InvalidArgument") || err.to_string().contains("invalid argument"),
            "{sql}: {err}"
        );
    }
}

#[tokio::test]
async fn dropping_a_stream_cancels_the_postgres_query() {
    let e = env();
    let mut c = flight_sql(e.open.flight()).await;
    // The scan fletch sends for `SELECT *` (see sql::pg_table).
    let active = || async {
        let q = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'fletch' AND state = 'active' \
                 AND query LIKE 'SELECT \"id\", \"timestamp\", %FROM \"logs\"'";
        sql_i64(&e.pg_url, q).await
    };
    let info = c.execute("SELECT * FROM postgres.logs".into(), None).await.unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let mut s = c.do_get(ticket).await.unwrap();
    let first = s.try_next().await.unwrap();
    assert!(first.is_some());
    // The query is still running in PostgreSQL, held back by the unread stream ...
    let deadline = Instant::now() + Duration::from_secs(5);
    while active().await == 0 {
        assert!(Instant::now() < deadline, "the scan should still be streaming from PostgreSQL");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ... and stops once the client goes away.
    drop(s);
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(10);
    while active().await > 0 {
        assert!(Instant::now() < deadline, "PostgreSQL query not cancelled after the Flight stream was dropped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn post_sql(
    srv: &TestServer,
    body: serde_json::Value,
    accept: Option<&str>,
    token: Option<&str>,
) -> reqwest::Response {
    let mut req = reqwest::Client::new().post(format!("http://{}/api/sql", srv.http)).json(&body);
    if let Some(a) = accept {
        req = req.header("Accept", a);
    }
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("POST /api/sql")
}

#[tokio::test]
async fn http_sql_streams_ndjson_csv_and_arrow() {
    let e = env();
    let sql = "SELECT level, count(*) AS n FROM hdfs.logs GROUP BY level ORDER BY level";
    let resp = post_sql(&e.open, serde_json::json!({"sql": sql}), None, None).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let text = resp.text().await.unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 4);
    let total: i64 = lines.iter().map(|l| l["n"].as_i64().unwrap()).sum();
    assert_eq!(total, BOTH as i64);

    let resp = post_sql(&e.open, serde_json::json!({"sql": sql, "format": "csv"}), None, None).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert_eq!(text.lines().next(), Some("level,n"));
    assert_eq!(text.lines().count(), 5);

    let resp = post_sql(
        &e.open,
        serde_json::json!({"sql": "SELECT id FROM postgres.logs WHERE id <= 10"}),
        Some("application/vnd.apache.arrow.stream"),
        None,
    )
    .await;
    assert_eq!(resp.status(), 200);
    let bytes = resp.bytes().await.unwrap();
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
    let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().unwrap();
    assert_eq!(rows(&batches), 10);

    // Zero rows in CSV still has the header.
    let resp = post_sql(
        &e.open,
        serde_json::json!({"sql": "SELECT id, level FROM postgres.logs WHERE 1=0", "format": "csv"}),
        None,
        None,
    )
    .await;
    assert_eq!(resp.text().await.unwrap(), "id,level\n");
}

#[tokio::test]
async fn http_sql_errors_are_400_with_the_message() {
    let e = env();
    let resp = post_sql(&e.open, serde_json::json!({"sql": "SELECT nope FROM hdfs.logs"}), None, None).await;
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "sql_error");
    assert!(body["message"].as_str().unwrap().contains("nope"), "{body}");

    let resp = post_sql(&e.open, serde_json::json!({"query": "SELECT 1"}), None, None).await;
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["parameter"], "body", "{body}");

    let resp = post_sql(&e.open, serde_json::json!({"sql": "SELECT 1", "format": "xml"}), None, None).await;
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["parameter"], "format", "{body}");

    // A nested column in CSV is refused before the status line, with rows or without (the
    // fuzz case that found it: a 200 whose body broke off at the first batch).
    for filter in ["", " WHERE 1=0"] {
        let sql = format!("SELECT created_at, {{'a': 1}} FROM postgres.logs{filter} LIMIT 200");
        let resp = post_sql(&e.open, serde_json::json!({"sql": sql, "format": "csv"}), None, None).await;
        assert_eq!(resp.status(), 400, "{sql}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["parameter"], "format", "{body}");
        assert!(body["message"].as_str().unwrap().contains("CSV cannot hold"), "{body}");
    }
}

#[tokio::test]
async fn auth_off_by_default_and_enforced_with_tokens() {
    let e = env();
    // Open server: no credentials needed anywhere.
    assert_eq!(post_sql(&e.open, serde_json::json!({"sql": "SELECT 1"}), None, None).await.status(), 200);

    // Locked server, HTTP: probes stay open, queries need the bearer token.
    let http = reqwest::Client::new();
    for path in ["/health", "/ready", "/metrics"] {
        // /ready is 503 until the connection actors are up; it must never ask for a token.
        let t = std::time::Instant::now();
        loop {
            let status = http.get(format!("http://{}{path}", e.locked.http)).send().await.unwrap().status();
            assert_ne!(status, 401, "{path} must not require a token");
            if status == 200 {
                break;
            }
            assert!(t.elapsed() < std::time::Duration::from_secs(10), "{path}: {status}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    let resp = http.get(format!("http://{}/api/query/postgres/stats", e.locked.http)).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "unauthenticated");
    assert_eq!(post_sql(&e.locked, serde_json::json!({"sql": "SELECT 1"}), None, Some("wrong")).await.status(), 401);
    assert_eq!(post_sql(&e.locked, serde_json::json!({"sql": "SELECT 1"}), None, Some(TOKEN)).await.status(), 200);

    // Locked server, Flight: UNAUTHENTICATED without a token, handshake → bearer → calls work.
    let mut c = flight(e.locked.flight()).await;
    let err = c.list_flights(bytes::Bytes::new()).await.err().expect("must be rejected");
    match err {
        arrow_flight::error::FlightError::Tonic(s) => assert_eq!(s.code(), tonic::Code::Unauthenticated),
        other => panic!("{other}"),
    }
    let mut s = flight_sql(e.locked.flight()).await;
    assert!(s.handshake("spark", "not-the-token").await.is_err());
    s.handshake("spark", TOKEN).await.expect("handshake");
    assert_eq!(s.token().map(String::as_str), Some(TOKEN));
    let info = s.execute("SELECT count(*) FROM postgres.logs".into(), None).await.unwrap();
    let (_, b) = fetch_sql(&mut s, info).await;
    assert_eq!(single_i64(&b), (BOTH + PG_ONLY) as i64);
}

#[tokio::test]
async fn sql_queries_take_admission_permits_per_source() {
    let e = env();
    let mut c = flight_sql(e.tight.flight()).await;
    // A reader that holds the only postgres permit while it does not read.
    let info = c.execute("SELECT * FROM postgres.logs".into(), None).await.unwrap();
    let mut held = c.do_get(info.endpoint[0].ticket.clone().unwrap()).await.unwrap();
    assert!(held.try_next().await.unwrap().is_some());

    let mut other = flight(e.tight.flight()).await;
    let mut busy = async |sql: &str| {
        let t = Ticket::new(serde_json::json!({"sql": sql}).to_string());
        match other.do_get(t).await {
            Ok(s) => s.try_collect::<Vec<_>>().await.err(),
            Err(e) => Some(e),
        }
    };
    match busy("SELECT count(*) FROM postgres.logs").await {
        Some(arrow_flight::error::FlightError::Tonic(s)) => {
            assert_eq!(s.code(), tonic::Code::Unavailable, "{s:?}");
            assert!(s.metadata().get("retry-after").is_some(), "retry hint missing: {s:?}");
        }
        other => panic!("expected UNAVAILABLE while the permit is held, got {other:?}"),
    }
    // The other source has its own permits; a join needs both, so it waits too.
    assert!(busy("SELECT count(*) FROM hdfs.logs").await.is_none());
    assert!(busy("SELECT count(*) FROM postgres.logs p JOIN hdfs.logs h ON p.id = h.id").await.is_some());

    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    while busy("SELECT count(*) FROM postgres.logs").await.is_some() {
        assert!(Instant::now() < deadline, "permit not released after the stream was dropped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
