//! Binary COPY of generated batches into PostgreSQL.

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int64Type, TimestampMicrosecondType};
use bytes::{BufMut, BytesMut};
use futures::pin_mut;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use tokio_postgres::Client;

use super::LoadError;

pub const CREATE_TABLE: &str = r#"CREATE TABLE IF NOT EXISTS logs (
    id bigserial PRIMARY KEY,
    "timestamp" double precision NOT NULL,
    level varchar(10) NOT NULL,
    service varchar(50) NOT NULL,
    host varchar(100) NOT NULL,
    message text NOT NULL,
    metadata jsonb,
    created_at timestamp without time zone DEFAULT now()
)"#;

pub const CREATE_INDEXES: &[&str] = &[
    r#"CREATE INDEX IF NOT EXISTS idx_logs_timestamp ON logs ("timestamp")"#,
    "CREATE INDEX IF NOT EXISTS idx_logs_level ON logs (level)",
    "CREATE INDEX IF NOT EXISTS idx_logs_service ON logs (service)",
];

const COPY_SQL: &str =
    r#"COPY logs (id, "timestamp", level, service, host, message, metadata, created_at) FROM STDIN (FORMAT binary)"#;
const COPY_TYPES: &[Type] =
    &[Type::INT8, Type::FLOAT8, Type::VARCHAR, Type::VARCHAR, Type::VARCHAR, Type::TEXT, Type::JSONB, Type::TIMESTAMP];

/// JSON text sent as `jsonb` without parsing it on our side (jsonb wire format: version 1 + text).
#[derive(Debug)]
struct RawJsonb<'a>(&'a str);

impl ToSql for RawJsonb<'_> {
    fn to_sql(&self, _ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.put_u8(1);
        out.put_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB
    }
    to_sql_checked!();
}

/// Microseconds since the Unix epoch as a `timestamp` (PostgreSQL counts from 2000-01-01).
#[derive(Debug)]
struct PgTimestamp(i64);

const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;

impl ToSql for PgTimestamp {
    fn to_sql(&self, _ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.put_i64(self.0 - PG_EPOCH_OFFSET_US);
        Ok(IsNull::No)
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMP
    }
    to_sql_checked!();
}

/// Whether `logs` exists; creates it when missing. Returns true when it was created now
/// (then secondary indexes are built after the load, which is much faster).
pub async fn ensure_table(client: &Client) -> Result<bool, LoadError> {
    let existed: bool = client.query_one("SELECT to_regclass('public.logs') IS NOT NULL", &[]).await?.get(0);
    if !existed {
        client.batch_execute(CREATE_TABLE).await?;
    }
    Ok(!existed)
}

pub async fn create_indexes(client: &Client) -> Result<(), LoadError> {
    for sql in CREATE_INDEXES {
        client.batch_execute(sql).await?;
    }
    Ok(())
}

/// First free id (so repeated loads append instead of colliding).
pub async fn next_id(client: &Client) -> Result<i64, LoadError> {
    Ok(client.query_one("SELECT coalesce(max(id), 0) + 1 FROM logs", &[]).await?.get(0))
}

/// Finish a load: sequence past the loaded ids, fresh planner statistics.
pub async fn finish(client: &Client) -> Result<i64, LoadError> {
    client
        .batch_execute("SELECT setval(pg_get_serial_sequence('logs', 'id'), (SELECT coalesce(max(id), 1) FROM logs)); ANALYZE logs")
        .await?;
    Ok(client.query_one("SELECT count(*) FROM logs", &[]).await?.get(0))
}

/// COPY every batch received into `logs` over one connection.
pub async fn copy_batches(
    client: &Client,
    batches: async_channel::Receiver<RecordBatch>,
    on_rows: impl Fn(usize),
) -> Result<u64, LoadError> {
    let sink = client.copy_in(COPY_SQL).await?;
    let writer = BinaryCopyInWriter::new(sink, COPY_TYPES);
    pin_mut!(writer);
    while let Ok(batch) = batches.recv().await {
        let id = batch.column(0).as_primitive::<Int64Type>();
        let ts = batch.column(1).as_primitive::<Float64Type>();
        let level = batch.column(2).as_string::<i32>();
        let service = batch.column(3).as_string::<i32>();
        let host = batch.column(4).as_string::<i32>();
        let message = batch.column(5).as_string::<i32>();
        let metadata = batch.column(6).as_string::<i32>();
        let created = batch.column(7).as_primitive::<TimestampMicrosecondType>();
        for i in 0..batch.num_rows() {
            let (idv, tsv) = (id.value(i), ts.value(i));
            let (j, c) = (RawJsonb(metadata.value(i)), PgTimestamp(created.value(i)));
            writer
                .as_mut()
                .write(&[&idv, &tsv, &level.value(i), &service.value(i), &host.value(i), &message.value(i), &j, &c])
                .await?;
        }
        on_rows(batch.num_rows());
    }
    Ok(writer.finish().await?)
}
