//! The archive's newest rows, decoded once per file listing and held newest first.
//!
//! Spark's files are unsorted and the files of the newest hour overlap in time, so no
//! statistics can narrow where the newest rows lie: every page of newest rows read
//! `timestamp` and the filter's columns of every row of those files, then decompressed
//! whole pages of `message` and `metadata`. Instead, after each listing change the first
//! page asked for starts a background read of the newest `parquet.newest_rows` rows (the
//! page's columns, by the same time-sliced read a page uses); until it is done pages are
//! read from the files as before. A descending page whose rows all lie in the copy is cut
//! from it; any other page (ascending, deeper than the copy, a filter too selective for
//! the rows held) is read from the files.
//!
//! Exactness: the copy holds every row with `timestamp > floor` (rows at the floor itself
//! are dropped, since the cut may have split them), or the whole archive. Every row
//! outside it sorts after all of it, so a page the copy can fill is the page the files
//! would give. A copy is only used for the listing generation it was read from.
//!
//! A listing that only adds files (a streaming writer's next micro-batch), or deletes
//! files whose rows all lie at or below the floor (retention), does not read the newest
//! rows again: the copy of the previous listing is extended with the new files' rows
//! above its floor ([`NewestRows::base`], [`NewestRows::extended`]), which keeps the same
//! guarantee at the cost of reading the new files alone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch, StringArray, UInt32Array};
use arrow::compute::kernels::cmp;
use arrow::datatypes::Float64Type;

use object_store::path::Path as StorePath;
use object_store::ObjectMeta;

use super::index::FileInfo;
use crate::error::QueryError;
use crate::query::{Filters, OrderBy, OrderDir, RowsQuery};

/// What the copy can do for one page.
#[derive(Debug)]
pub enum Lookup {
    /// The page, cut from the copy.
    Page(RecordBatch),
    /// Read the files; when `build` is set, the caller starts reading a copy for this
    /// generation (the flag is handed out once per generation).
    Miss { build: bool },
}

/// The copy for one listing generation.
struct Held {
    generation: u64,
    /// Newest first, `logs` columns.
    rows: RecordBatch,
    /// `None` when `rows` is the whole archive.
    floor: Option<f64>,
    /// The listing it was read from.
    files: Arc<Vec<FileInfo>>,
    /// Listings it was extended over since the newest rows were last read in full.
    extended: u64,
}

/// A held copy that a newer listing kept whole (see [`NewestRows::base`]): the copy for
/// that listing is these rows plus the rows of `added` above `floor`.
pub struct Base {
    rows: RecordBatch,
    extended: u64,
    pub floor: Option<f64>,
    pub added: Vec<FileInfo>,
}

#[derive(Default)]
struct State {
    held: Option<Arc<Held>>,
    /// The generation a copy is being read for, since when.
    building: Option<(u64, Instant)>,
}

/// A read not reported back within this time (its task gone with its runtime) no longer
/// stops another from starting.
const BUILD_EXPIRES: Duration = Duration::from_secs(120);

pub struct NewestRows {
    capacity: usize,
    state: Mutex<State>,
}

impl NewestRows {
    /// Hold up to `capacity` rows; 0 turns the copy off.
    pub fn new(capacity: usize) -> Self {
        Self { capacity, state: Mutex::default() }
    }

    /// Rows to read for a copy: one more than held, so a full copy knows it is not the
    /// whole archive.
    pub fn rows_to_read(&self) -> u64 {
        self.capacity as u64 + 1
    }

    /// Whether the copy could ever answer `q`: newest first by timestamp, a limit, and a
    /// page that ends within the copy.
    pub fn eligible(&self, q: &RowsQuery) -> bool {
        self.capacity > 0
            && q.order_by == OrderBy::Timestamp
            && q.order_dir == OrderDir::Desc
            && q.limit.is_some_and(|l| q.offset.saturating_add(l) <= self.capacity as u64)
    }

    /// Answer `q` from the copy of `generation`, or say why not.
    pub fn page(&self, generation: u64, q: &RowsQuery) -> Result<Lookup, QueryError> {
        if !self.eligible(q) {
            return Ok(Lookup::Miss { build: false });
        }
        let held = {
            let mut state = self.state.lock().expect("newest rows lock");
            match &state.held {
                Some(h) if h.generation == generation => h.clone(),
                _ => {
                    let build =
                        state.building.is_none_or(|(g, since)| g < generation || since.elapsed() > BUILD_EXPIRES);
                    if build {
                        state.building = Some((generation, Instant::now()));
                    }
                    return Ok(Lookup::Miss { build });
                }
            }
        };
        Ok(match cut(&held, q)? {
            Some(page) => Lookup::Page(page),
            None => Lookup::Miss { build: false },
        })
    }

    /// The newest rows of `generation`'s listing `files` (newest first, at most
    /// [`Self::rows_to_read`]), or why they could not be read (the next page of that
    /// generation tries again).
    pub fn built(&self, generation: u64, files: Arc<Vec<FileInfo>>, read: Result<RecordBatch, QueryError>) {
        let held = read.map(|rows| trim(generation, rows, self.capacity, None, files));
        self.keep(generation, held);
    }

    /// The held copy, when `files` keeps every file it was read from unchanged, except
    /// files whose rows all lie at or below its floor (a retention job's deletions), and
    /// otherwise only adds files: the copy for `files` can then be made by
    /// [`Self::extended`].
    pub fn base(&self, files: &[FileInfo]) -> Option<Base> {
        let held = self.state.lock().expect("newest rows lock").held.clone()?;
        let listed: HashMap<&StorePath, &ObjectMeta> = files.iter().map(|f| (&f.meta.location, &f.meta)).collect();
        let below_floor = |f: &FileInfo| held.floor.is_some_and(|floor| f.time_range().1 <= floor);
        let kept = held.files.iter().all(|f| listed.get(&f.meta.location) == Some(&&f.meta) || below_floor(f));
        if !kept {
            return None;
        }
        let before: HashMap<&StorePath, &ObjectMeta> = held.files.iter().map(|f| (&f.meta.location, &f.meta)).collect();
        let added = files.iter().filter(|f| before.get(&f.meta.location) != Some(&&f.meta)).cloned().collect();
        Some(Base { rows: held.rows.clone(), extended: held.extended, floor: held.floor, added })
    }

    /// Hold the copy for `generation`'s listing `files`: `base` plus `added`, the rows of
    /// its new files above its floor (newest first, at most [`Self::rows_to_read`]). On an
    /// error nothing changes, and the caller reads the newest rows in full instead.
    pub fn extended(
        &self,
        generation: u64,
        files: Arc<Vec<FileInfo>>,
        base: Base,
        added: &RecordBatch,
    ) -> Result<(), QueryError> {
        let both = arrow::compute::concat_batches(&base.rows.schema(), [&base.rows, added])?;
        let order = arrow::compute::sort_to_indices(
            timestamps(&both),
            Some(arrow::compute::SortOptions { descending: true, nulls_first: false }),
            Some(self.capacity + 1),
        )?;
        let newest = arrow::compute::take_record_batch(&both, &order)?;
        let held = trim(generation, newest, self.capacity, base.floor, files);
        self.keep(generation, Ok(Held { extended: base.extended + 1, ..held }));
        Ok(())
    }

    /// Hold `held` as the copy of `generation`, unless a newer one is held already.
    fn keep(&self, generation: u64, held: Result<Held, QueryError>) {
        let mut state = self.state.lock().expect("newest rows lock");
        if state.building.is_some_and(|(g, _)| g == generation) {
            state.building = None;
        }
        let held = match held {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(error = %e, generation, "reading the archive's newest rows failed; pages read the files");
                return;
            }
        };
        if state.held.as_ref().is_some_and(|h| h.generation > generation) {
            return;
        }
        state.held = Some(Arc::new(held));
    }

    /// For `/ready`: what is held, for which generation.
    pub fn describe(&self) -> serde_json::Value {
        let state = self.state.lock().expect("newest rows lock");
        match &state.held {
            Some(h) => serde_json::json!({
                "capacity": self.capacity,
                "generation": h.generation,
                "rows": h.rows.num_rows(),
                "bytes": h.rows.get_array_memory_size(),
                "whole_archive": h.floor.is_none(),
                "newer_than": h.floor,
                "extended": h.extended,
            }),
            None => serde_json::json!({ "capacity": self.capacity, "rows": 0 }),
        }
    }
}

/// Keep the rows above the lowest timestamp read, `rows` being every row above `floor`
/// newest first (at most `capacity + 1` of them). When no more than `capacity` came back
/// all are kept, above the same floor (`None`: the whole archive).
fn trim(generation: u64, rows: RecordBatch, capacity: usize, floor: Option<f64>, files: Arc<Vec<FileInfo>>) -> Held {
    if rows.num_rows() <= capacity {
        return Held { generation, rows, floor, files, extended: 0 };
    }
    let ts = timestamps(&rows);
    let last = rows.num_rows() - 1;
    // Nulls sort last: a null at the cut means every non-null row was read.
    let floor = if ts.is_valid(last) { ts.value(last) } else { f64::NEG_INFINITY };
    let keep = (0..rows.num_rows()).take_while(|&i| ts.is_valid(i) && ts.value(i) > floor).count();
    Held { generation, rows: rows.slice(0, keep), floor: Some(floor), files, extended: 0 }
}

fn timestamps(rows: &RecordBatch) -> &arrow::array::PrimitiveArray<Float64Type> {
    rows.column_by_name("timestamp").and_then(|c| c.as_primitive_opt::<Float64Type>()).expect("logs timestamp column")
}

/// The page `q` asks for, when the copy holds all of it.
fn cut(held: &Held, q: &RowsQuery) -> Result<Option<RecordBatch>, QueryError> {
    let offset = q.offset as usize;
    let want = offset + q.limit.unwrap_or(0) as usize;
    let matching: Vec<u32> = match matches(&held.rows, &q.filters)? {
        None => (0..held.rows.num_rows().min(want) as u32).collect(),
        Some(mask) => mask.values().set_indices().take(want).map(|i| i as u32).collect(),
    };
    if matching.len() < want && held.floor.is_some() {
        return Ok(None);
    }
    let page = UInt32Array::from(matching.get(offset.min(matching.len())..).unwrap_or_default().to_vec());
    Ok(Some(arrow::compute::take_record_batch(&held.rows, &page)?))
}

/// Rows of `rows` that `f` keeps (as SQL would: a null compares false); `None` for no
/// filter at all.
fn matches(rows: &RecordBatch, f: &Filters) -> Result<Option<BooleanArray>, QueryError> {
    let mut mask: Option<BooleanArray> = None;
    let mut and = |m: BooleanArray| -> Result<(), QueryError> {
        // A null is not a match; `prep` turns them into false before the bits are read.
        let m = if m.null_count() > 0 { arrow::compute::prep_null_mask_filter(&m) } else { m };
        mask = Some(match mask.take() {
            Some(prev) => arrow::compute::and(&prev, &m)?,
            None => m,
        });
        Ok(())
    };
    for (name, value) in f.labels() {
        if let Some(v) = value {
            let column = rows.column_by_name(name).ok_or_else(|| QueryError::internal(format!("no {name} column")))?;
            and(cmp::eq(column, &StringArray::new_scalar(v))?)?;
        }
    }
    let ts = timestamps(rows);
    if let Some(t) = f.start_time {
        and(cmp::gt_eq(ts, &arrow::array::Float64Array::new_scalar(t))?)?;
    }
    if let Some(t) = f.end_time {
        and(cmp::lt_eq(ts, &arrow::array::Float64Array::new_scalar(t))?)?;
    }
    Ok(mask)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Float64Array;
    use arrow::datatypes::{DataType, Field, Schema};

    use crate::archive::index::RowGroupStats;

    /// Rows newest first: timestamps `ts`, levels cycling ERROR, INFO, INFO.
    fn rows(ts: &[Option<f64>]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("timestamp", DataType::Float64, true),
            Field::new("level", DataType::Utf8, true),
        ]));
        let levels: Vec<&str> = (0..ts.len()).map(|i| if i % 3 == 0 { "ERROR" } else { "INFO" }).collect();
        RecordBatch::try_new(
            schema,
            vec![Arc::new(Float64Array::from(ts.to_vec())), Arc::new(StringArray::from(levels))],
        )
        .unwrap()
    }

    fn page(limit: u64, offset: u64, filters: Filters) -> RowsQuery {
        RowsQuery { filters, limit: Some(limit), offset, order_by: OrderBy::Timestamp, order_dir: OrderDir::Desc }
    }

    fn ts_of(b: &RecordBatch) -> Vec<f64> {
        timestamps(b).values().to_vec()
    }

    fn cache_of(capacity: usize, read: RecordBatch) -> NewestRows {
        let c = NewestRows::new(capacity);
        assert!(matches!(c.page(7, &page(1, 0, Filters::default())).unwrap(), Lookup::Miss { build: true }));
        c.built(7, Arc::default(), Ok(read));
        c
    }

    #[test]
    fn a_full_copy_drops_the_rows_at_its_floor() {
        // capacity 4, 5 read: 9 8 7 7 | 7 → the 7s may go on past the cut.
        let c = cache_of(4, rows(&[Some(9.0), Some(8.0), Some(7.0), Some(7.0), Some(7.0)]));
        let Lookup::Page(p) = c.page(7, &page(2, 0, Filters::default())).unwrap() else { panic!("2 rows are held") };
        assert_eq!(ts_of(&p), vec![9.0, 8.0]);
        assert!(matches!(c.page(7, &page(3, 0, Filters::default())).unwrap(), Lookup::Miss { build: false }));
    }

    #[test]
    fn filters_offsets_and_the_whole_archive() {
        let all: Vec<Option<f64>> = (0..9).rev().map(|t| Some(t as f64)).collect();
        let error = Filters { level: Some("ERROR".into()), ..Filters::default() };
        // The whole archive (9 rows < capacity + 1): any page, even one it cannot fill.
        let c = cache_of(20, rows(&all));
        let Lookup::Page(p) = c.page(7, &page(5, 1, error.clone())).unwrap() else { panic!("whole archive held") };
        assert_eq!(ts_of(&p), vec![5.0, 2.0], "ERROR rows are 8, 5, 2; offset 1");
        let window = Filters { start_time: Some(3.0), end_time: Some(6.0), ..Filters::default() };
        let Lookup::Page(p) = c.page(7, &page(10, 0, window)).unwrap() else { panic!("whole archive held") };
        assert_eq!(ts_of(&p), vec![6.0, 5.0, 4.0, 3.0]);
        // Part of it (capacity 6 of 9): a page of ERROR rows needing a third is not cut.
        let part = cache_of(6, rows(&all[..7]));
        let Lookup::Page(p) = part.page(7, &page(2, 0, error.clone())).unwrap() else { panic!("8 and 5 are held") };
        assert_eq!(ts_of(&p), vec![8.0, 5.0]);
        assert!(matches!(part.page(7, &page(3, 0, error)).unwrap(), Lookup::Miss { build: false }));
    }

    #[test]
    fn another_generation_reads_the_files_and_builds_once() {
        let c = cache_of(4, rows(&[Some(3.0), Some(2.0)]));
        assert!(matches!(c.page(8, &page(1, 0, Filters::default())).unwrap(), Lookup::Miss { build: true }));
        assert!(matches!(c.page(8, &page(1, 0, Filters::default())).unwrap(), Lookup::Miss { build: false }));
        c.built(8, Arc::default(), Err(QueryError::internal("read failed")));
        assert!(matches!(c.page(8, &page(1, 0, Filters::default())).unwrap(), Lookup::Miss { build: true }));
        let asc = RowsQuery { order_dir: OrderDir::Asc, ..page(1, 0, Filters::default()) };
        assert!(!c.eligible(&asc));
        assert!(!NewestRows::new(0).eligible(&page(1, 0, Filters::default())));
    }

    #[test]
    fn nulls_at_the_cut_mean_every_timed_row_is_held() {
        let c = cache_of(2, rows(&[Some(5.0), None, None]));
        let Lookup::Page(p) = c.page(7, &page(1, 0, Filters::default())).unwrap() else { panic!("5 is held") };
        assert_eq!(ts_of(&p), vec![5.0]);
        assert!(matches!(c.page(7, &page(2, 0, Filters::default())).unwrap(), Lookup::Miss { build: false }));
    }

    /// Files `(name, size)`, each with one row group spanning 0..=10 (their rows reach
    /// above any floor of these tests), except names starting with `old`: 0..=1.
    fn listed(names: &[(&str, u64)]) -> Arc<Vec<FileInfo>> {
        let files = names
            .iter()
            .map(|&(name, size)| {
                let ts_max = if name.starts_with("old") { 1.0 } else { 10.0 };
                let mut f = FileInfo::named(name, vec![RowGroupStats { ts_min: 0.0, ts_max, rows: 1 }]);
                f.meta.size = size;
                f
            })
            .collect();
        Arc::new(files)
    }

    #[test]
    fn a_listing_that_only_adds_files_extends_the_copy() {
        let c = NewestRows::new(4);
        let first = listed(&[("a", 1), ("b", 1)]);
        c.built(7, first, Ok(rows(&[Some(10.0), Some(9.0), Some(8.0), Some(7.0), Some(6.0)])));
        // b changed or went away: read again.
        assert!(c.base(&listed(&[("a", 1), ("b", 2), ("c", 1)])).is_none());
        assert!(c.base(&listed(&[("a", 1), ("c", 1)])).is_none());
        let now = listed(&[("a", 1), ("b", 1), ("c", 1)]);
        let base = c.base(&now).expect("only c was added");
        let added: Vec<&str> = base.added.iter().map(|f| f.meta.location.as_ref()).collect();
        assert_eq!((added, base.floor), (vec!["c"], Some(6.0)));
        // c's rows above the floor: one newest of all, one among the held ones.
        c.extended(8, now, base, &rows(&[Some(11.0), Some(7.5)])).unwrap();
        let Lookup::Page(p) = c.page(8, &page(4, 0, Filters::default())).unwrap() else { panic!("4 rows are held") };
        assert_eq!(ts_of(&p), vec![11.0, 10.0, 9.0, 8.0], "7.5 became the floor");
        assert!(matches!(c.page(8, &page(5, 0, Filters::default())).unwrap(), Lookup::Miss { build: false }));
    }

    #[test]
    fn files_deleted_below_the_floor_leave_the_copy_whole() {
        let c = NewestRows::new(2);
        c.built(7, listed(&[("old-a", 1), ("b", 1)]), Ok(rows(&[Some(9.0), Some(8.0), Some(7.0)])));
        // old-a's rows all lie at or below the floor (7): deleting it changes nothing held.
        let base = c.base(&listed(&[("b", 1), ("c", 1)])).expect("old-a held nothing");
        assert_eq!(base.added.iter().map(|f| f.meta.location.as_ref()).collect::<Vec<_>>(), vec!["c"]);
        // b's rows reach above it: deleting or rewriting b means reading again.
        assert!(c.base(&listed(&[("old-a", 1)])).is_none());
        assert!(c.base(&listed(&[("old-a", 1), ("b", 2)])).is_none());
        // A copy of the whole archive has no floor: any deletion means reading again.
        let whole = NewestRows::new(5);
        whole.built(7, listed(&[("old-a", 1), ("b", 1)]), Ok(rows(&[Some(9.0)])));
        assert!(whole.base(&listed(&[("b", 1)])).is_none());
    }

    #[test]
    fn an_extended_copy_under_capacity_keeps_its_floor() {
        let c = NewestRows::new(4);
        // The whole archive was held: still the whole archive with the new rows.
        c.built(7, listed(&[("a", 1)]), Ok(rows(&[Some(2.0)])));
        let now = listed(&[("a", 1), ("b", 1)]);
        let base = c.base(&now).unwrap();
        c.extended(8, now, base, &rows(&[Some(3.0), Some(1.0)])).unwrap();
        let Lookup::Page(p) = c.page(8, &page(4, 0, Filters::default())).unwrap() else { panic!("whole archive") };
        assert_eq!(ts_of(&p), vec![3.0, 2.0, 1.0]);
        // A copy above a floor stays above it when a few rows are added.
        let c = NewestRows::new(4);
        c.built(7, listed(&[("a", 1)]), Ok(rows(&[Some(9.0), Some(8.0), Some(7.0), Some(7.0), Some(7.0)])));
        let now = listed(&[("a", 1), ("b", 1)]);
        let base = c.base(&now).unwrap();
        c.extended(8, now, base, &rows(&[Some(7.5)])).unwrap();
        let Lookup::Page(p) = c.page(8, &page(3, 0, Filters::default())).unwrap() else { panic!("3 rows above 7") };
        assert_eq!(ts_of(&p), vec![9.0, 8.0, 7.5]);
        assert!(matches!(c.page(8, &page(4, 0, Filters::default())).unwrap(), Lookup::Miss { build: false }));
    }
}
