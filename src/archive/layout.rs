//! What an archive file looks like and how it becomes a row of `logs`.
//!
//! The archive is whatever its writers made: files from `fletch load` (the `logs` columns,
//! `metadata` as JSON text), and files from the pipeline's Spark job (no `id` or
//! `created_at`, `metadata` as a Parquet MAP, an extra `event_time`, hive partition
//! directories `year=/month=/day=/hour=`). Each file's schema is read from its footer;
//! files whose schemas merge (equal, or differing by added columns) share a [`Layout`], and
//! each layout is projected onto one table schema: the `logs` columns first, in the API's
//! order and types (absent ones NULL, a MAP `metadata` as a JSON object's text), then every
//! other column any file has, then the partition columns.
//!
//! A file that cannot be brought to that shape (no `timestamp`, a label that is not text)
//! is refused with a reason; the index skips it and `/ready` names it.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::logical_expr::{cast, col, lit, Expr, ExprSchemable};
use datafusion::scalar::ScalarValue;
use object_store::path::Path as StorePath;

use crate::schema::logs_schema;

/// The partition value Hive and Spark write for NULL.
const HIVE_NULL: &str = "__HIVE_DEFAULT_PARTITION__";

/// Strings as plain `Utf8` (what clients read) or as `Utf8View` (cheaper to decode, for
/// aggregates and counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strings {
    Plain,
    View,
}

/// The merged schema of files that can be read as one scan.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Physical columns, as the Parquet reader produces them (strings as `Utf8`).
    pub file_schema: SchemaRef,
}

/// A file's path relative to the archive directory, by segment; `None` when outside it.
pub fn relative<'a>(dir: &StorePath, file: &'a StorePath) -> Option<Vec<&'a str>> {
    let segments: Vec<&'a str> = file.as_ref().split('/').collect();
    let depth = dir.parts().count();
    let inside = segments.len() > depth && dir.parts().zip(&segments).all(|(d, s)| d.as_ref() == *s);
    inside.then(|| segments[depth..].to_vec())
}

/// Hidden by the Hive / Spark convention: a `_` or `.` prefix on any segment
/// (`_spark_metadata/`, `_SUCCESS`, `.part-….crc`, `_temporary/`).
pub fn is_hidden(rel: &[&str]) -> bool {
    rel.iter().any(|s| s.starts_with('_') || s.starts_with('.'))
}

/// `key=value` directories above a file, outermost first, values decoded (`None` for
/// Hive's NULL).
pub type PartitionValues = Vec<(String, Option<String>)>;

/// The `key=value` directories above a file, outermost first, values decoded.
pub fn partition_values(rel: &[&str]) -> PartitionValues {
    let dirs = &rel[..rel.len().saturating_sub(1)];
    dirs.iter()
        .filter_map(|d| d.split_once('='))
        .map(|(k, v)| {
            let v = percent_decode(v);
            (percent_decode(k), (v != HIVE_NULL).then_some(v))
        })
        .collect()
}

/// `%xx` escapes (as Hive and Spark write them in paths) decoded.
pub(super) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Partition columns of a set of files: names in order of first appearance, typed `Int32`
/// when every value is an integer that fits (as Spark infers them), else `Utf8`.
pub fn partition_columns<'a>(files: impl Iterator<Item = &'a [(String, Option<String>)]>) -> Vec<Field> {
    let mut order: Vec<String> = Vec::new();
    let mut ints: HashMap<String, bool> = HashMap::new();
    for values in files {
        for (k, v) in values {
            if !ints.contains_key(k) {
                order.push(k.clone());
            }
            let is_int = v.as_deref().is_none_or(|v| v.parse::<i32>().is_ok());
            *ints.entry(k.clone()).or_insert(true) &= is_int;
        }
    }
    order
        .into_iter()
        .map(|k| {
            let ty = if ints[&k] { DataType::Int32 } else { DataType::Utf8 };
            Field::new(k, ty, true)
        })
        .collect()
}

/// One file's values for `columns` (NULL where it has none), typed as the columns are.
pub fn partition_scalars(columns: &[Field], values: &[(String, Option<String>)]) -> Vec<ScalarValue> {
    columns
        .iter()
        .map(|c| {
            let v = values.iter().find(|(k, _)| k == c.name()).and_then(|(_, v)| v.as_deref());
            match c.data_type() {
                DataType::Int32 => ScalarValue::Int32(v.and_then(|v| v.parse().ok())),
                _ => ScalarValue::Utf8(v.map(str::to_string)),
            }
        })
        .collect()
}

/// Whether a file's columns can be read as `logs`; the reason when not.
pub fn check_file_schema(schema: &Schema) -> Result<(), String> {
    let logs = logs_schema();
    for want in logs.fields() {
        let Ok(have) = schema.field_with_name(want.name()) else {
            if want.name() == "timestamp" {
                return Err("no `timestamp` column".into());
            }
            continue;
        };
        let ty = have.data_type();
        let fits = match want.name().as_str() {
            "id" => ty.is_integer(),
            "timestamp" => ty.is_numeric(),
            "created_at" => matches!(ty, DataType::Timestamp(..) | DataType::Date32 | DataType::Date64),
            "metadata" => is_text(ty) || is_string_map(ty),
            _ => is_text(ty),
        };
        if !fits {
            return Err(format!("column `{}` is {ty}, which cannot be read as {}", want.name(), want.data_type()));
        }
    }
    Ok(())
}

fn is_text(ty: &DataType) -> bool {
    match ty {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, v) => is_text(v),
        _ => false,
    }
}

/// A MAP whose keys are text (`map<string, …>`, what Spark writes for `metadata`).
pub fn is_string_map(ty: &DataType) -> bool {
    match ty {
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(f) => f.len() == 2 && is_text(f[0].data_type()),
            _ => false,
        },
        _ => false,
    }
}

/// Group file schemas into layouts: a schema joins the first layout it merges with
/// (same types for shared names), else starts its own. Returns the layouts and, for each
/// input schema, its layout's index.
pub fn group_layouts(schemas: &[SchemaRef]) -> (Vec<Layout>, Vec<usize>) {
    let mut layouts: Vec<Layout> = Vec::new();
    let mut of = Vec::with_capacity(schemas.len());
    // Files of one writer share one interned schema: look each distinct one up once.
    let mut memo: HashMap<*const Schema, usize> = HashMap::new();
    for s in schemas {
        if let Some(&i) = memo.get(&Arc::as_ptr(s)) {
            // A layout only grows, so a schema that joined it still fits.
            of.push(i);
            continue;
        }
        let plain = strip_metadata(s);
        let joined = layouts.iter().position(|l| merge(&l.file_schema, &plain).is_some());
        let i = match joined {
            Some(i) => {
                layouts[i].file_schema = merge(&layouts[i].file_schema, &plain).expect("merged above");
                i
            }
            None => {
                layouts.push(Layout { file_schema: plain });
                layouts.len() - 1
            }
        };
        memo.insert(Arc::as_ptr(s), i);
        of.push(i);
    }
    (layouts, of)
}

fn strip_metadata(s: &Schema) -> SchemaRef {
    let fields: Vec<Field> = s.fields().iter().map(|f| f.as_ref().clone().with_metadata(Default::default())).collect();
    Arc::new(Schema::new(fields))
}

/// `a` followed by the columns of `b` it lacks, when no shared name differs in type.
fn merge(a: &SchemaRef, b: &SchemaRef) -> Option<SchemaRef> {
    let mut fields: Vec<Field> = a.fields().iter().map(|f| f.as_ref().clone()).collect();
    for f in b.fields() {
        match a.field_with_name(f.name()) {
            Ok(have) if have.data_type() == f.data_type() => {}
            Ok(_) => return None,
            Err(_) => fields.push(f.as_ref().clone().with_nullable(true)),
        }
    }
    if fields.len() == a.fields().len() {
        return Some(a.clone());
    }
    Some(Arc::new(Schema::new(fields)))
}

/// The table every layout is projected onto: `logs`, then the other columns of all
/// layouts (a column whose type differs between layouts becomes text), then the
/// partition columns. `previous` keeps columns seen before in place, so the table only
/// grows while fletch runs and plans made a moment ago stay valid.
pub fn table_schema(previous: &Schema, layouts: &[Layout], partitions: &[Field]) -> SchemaRef {
    let logs = logs_schema();
    // Columns already in the table keep their place and type.
    let mut extras: Vec<(Field, bool)> =
        previous.fields().iter().skip(logs.fields().len()).map(|f| (f.as_ref().clone(), true)).collect();
    let found = layouts
        .iter()
        .flat_map(|l| l.file_schema.fields().iter())
        .map(|f| Field::new(f.name(), extra_type(f.data_type()), true));
    for f in found.chain(partitions.iter().cloned()) {
        if logs.field_with_name(f.name()).is_ok() {
            continue;
        }
        match extras.iter_mut().find(|(e, _)| e.name() == f.name()) {
            Some((e, false)) if e.data_type() != f.data_type() => *e = e.clone().with_data_type(DataType::Utf8),
            Some(_) => {}
            None => extras.push((f.with_nullable(true), false)),
        }
    }
    let fields: Vec<Field> =
        logs.fields().iter().map(|f| f.as_ref().clone()).chain(extras.into_iter().map(|(f, _)| f)).collect();
    Arc::new(Schema::new(fields))
}

/// How an extra column is shown: timestamps as UTC microseconds (Spark's INT96 reads as
/// nanoseconds without a zone, but means an instant), dictionaries as their values.
fn extra_type(ty: &DataType) -> DataType {
    match ty {
        DataType::Timestamp(_, tz) => {
            DataType::Timestamp(TimeUnit::Microsecond, Some(tz.clone().unwrap_or_else(|| "UTC".into())))
        }
        DataType::Dictionary(_, v) => extra_type(v),
        DataType::LargeUtf8 | DataType::Utf8View => DataType::Utf8,
        other => other.clone(),
    }
}

/// The file schema a layout is scanned with: strings as `strings` asks.
pub fn scan_schema(layout: &Layout, strings: Strings) -> SchemaRef {
    if strings == Strings::Plain {
        return layout.file_schema.clone();
    }
    let fields: Vec<Field> = layout
        .file_schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 => f.as_ref().clone().with_data_type(DataType::Utf8View),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// `table`'s type for a column when strings are read as `strings`.
pub fn output_type(ty: &DataType, strings: Strings) -> DataType {
    match (ty, strings) {
        (DataType::Utf8, Strings::View) => DataType::Utf8View,
        _ => ty.clone(),
    }
}

/// Expressions that turn a scan of `scanned` (file columns, then partition columns) into
/// the columns `wanted`, by name: same type as is, other types cast, a MAP `metadata` as
/// JSON text, absent columns NULL.
pub fn projection(
    scanned: &datafusion::common::DFSchema,
    wanted: &[Field],
    strings: Strings,
    map_to_json: &Arc<datafusion::logical_expr::ScalarUDF>,
) -> datafusion::error::Result<Vec<Expr>> {
    wanted
        .iter()
        .map(|f| {
            let want = output_type(f.data_type(), strings);
            let Some((_, have)) = scanned.iter().find(|(_, h)| h.name() == f.name()) else {
                return Ok(cast(lit(ScalarValue::Null), want));
            };
            let column = col(datafusion::common::Column::from_name(f.name()));
            if have.data_type() == &want {
                Ok(column)
            } else if is_string_map(have.data_type()) {
                Ok(cast(map_to_json.call(vec![column]), want))
            } else {
                column.cast_to(&want, scanned)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spark_schema() -> SchemaRef {
        let entries = Field::new(
            "key_value",
            DataType::Struct(
                vec![Field::new("key", DataType::Utf8, false), Field::new("value", DataType::Utf8, true)].into(),
            ),
            false,
        );
        Arc::new(Schema::new(vec![
            Field::new("timestamp", DataType::Float64, true),
            Field::new("level", DataType::Utf8, true),
            Field::new("service", DataType::Utf8, true),
            Field::new("host", DataType::Utf8, true),
            Field::new("message", DataType::Utf8, true),
            Field::new("metadata", DataType::Map(Arc::new(entries), false), true),
            Field::new("event_time", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
        ]))
    }

    #[test]
    fn hive_directories_become_partition_values() {
        let dir = StorePath::from("data/logs/raw");
        let file =
            StorePath::from("data/logs/raw/year=2026/month=1/day=12/hour=__HIVE_DEFAULT_PARTITION__/part-0.parquet");
        let rel = relative(&dir, &file).unwrap();
        assert!(!is_hidden(&rel));
        let values = partition_values(&rel);
        assert_eq!(values[0], ("year".into(), Some("2026".into())));
        assert_eq!(values[3], ("hour".into(), None));
        let cols = partition_columns(std::iter::once(values.as_slice()));
        assert!(cols.iter().all(|c| c.data_type() == &DataType::Int32));
        assert_eq!(partition_scalars(&cols, &values)[1], ScalarValue::Int32(Some(1)));
        let log = StorePath::from("data/logs/raw/_spark_metadata/0");
        assert!(is_hidden(&relative(&dir, &log).unwrap()));
        assert!(relative(&dir, &StorePath::from("data/other/x.parquet")).is_none());
    }

    #[test]
    fn spark_and_fletch_files_get_separate_layouts_and_one_table() {
        let (layouts, of) = group_layouts(&[logs_schema(), spark_schema(), spark_schema(), logs_schema()]);
        assert_eq!(layouts.len(), 2);
        assert_eq!(of, vec![0, 1, 1, 0]);
        assert!(check_file_schema(&spark_schema()).is_ok());
        let parts = vec![Field::new("year", DataType::Int32, true)];
        let table = table_schema(&logs_schema(), &layouts, &parts);
        let names: Vec<_> = table.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(&names[8..], &["event_time", "year"]);
        assert_eq!(table.field(8).data_type(), &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())));
        // The table never loses a column it had.
        let again = table_schema(&table, &layouts[..1], &[]);
        assert_eq!(again, table);
    }

    #[test]
    fn files_without_timestamp_or_with_odd_labels_are_refused() {
        let no_ts = Schema::new(vec![Field::new("level", DataType::Utf8, true)]);
        assert!(check_file_schema(&no_ts).unwrap_err().contains("timestamp"));
        let odd = Schema::new(vec![
            Field::new("timestamp", DataType::Float64, true),
            Field::new("level", DataType::Int32, true),
        ]);
        assert!(check_file_schema(&odd).unwrap_err().contains("level"));
    }
}
