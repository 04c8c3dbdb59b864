//! Deep pages: an offset passes over what it can count instead of reading it.
//!
//! Time-sorted files (`fletch load`'s) are skipped row group by row group, or with label
//! filters file by file from their rollups ([`skip_whole_row_groups`],
//! [`skip_counted_files`]). Files not in time order (Spark's: each writer task's file spans
//! the same stretch of its hour partition) cannot be skipped one by one, but they group
//! into *runs*: stretches of time in which row groups overlap, separated by gaps no row
//! group spans. Every row of a run sorts before every row of the next, so an offset passes
//! over whole runs by their row counts (or rollup counts) and only the run the page starts
//! in is read ([`runs_in_order`], [`pass_over`]).

use futures::{stream, StreamExt};

use arrow::array::RecordBatch;

use super::index::FileInfo;
use super::rollup::Rollups;
use super::sorted_export;
use crate::error::QueryError;
use crate::query::{Filters, OrderDir};
use crate::stream::BatchStream;

/// From this offset on, an unfiltered page skips row groups by their counts instead of
/// reading time slices up to the offset.
pub const DEEP_OFFSET: u64 = 10_000;

/// Drop the row groups an offset passes over entirely; the rest of the offset falls in the
/// first row group left.
pub fn skip_whole_row_groups(
    files: &[FileInfo],
    units: Vec<sorted_export::Unit>,
    mut offset: u64,
) -> (Vec<sorted_export::Unit>, u64) {
    let skipped = units.iter().take_while(|u| {
        let n = u.rows(files);
        let whole = offset >= n;
        if whole {
            offset -= n;
        }
        whole
    });
    let skip = skipped.count();
    (units[skip..].to_vec(), offset)
}

/// Drop the files a filtered offset passes over entirely, known from their rollups: a file
/// goes when its rollup says all of its matching rows lie before the page. Stops at the
/// first file that straddles a time bound, has no rollup yet, holds part of the page, or
/// whose row groups interleave with another file's; the rest of the offset is read.
pub fn skip_counted_files(
    files: &[FileInfo],
    units: Vec<sorted_export::Unit>,
    filters: &Filters,
    mut offset: u64,
    rollups: &Rollups,
) -> (Vec<sorted_export::Unit>, u64) {
    let (start, end) = filters.time_bounds();
    let mut at = 0;
    while at < units.len() {
        let file = units[at].file;
        let here = units[at..].iter().take_while(|u| u.file == file).count();
        let f = &files[file];
        let whole = here == f.row_groups.len() && f.row_groups.iter().all(|g| g.ts_min >= start && g.ts_max <= end);
        match rollups.matching(f, filters).filter(|_| whole) {
            Some(n) if offset >= n as u64 => {
                offset -= n as u64;
                at += here;
            }
            _ => break,
        }
    }
    (units[at..].to_vec(), offset)
}

/// At most `n` rows of `inner` (its schema batch included), then the end: the rest is
/// never read.
pub fn take_rows(inner: BatchStream, n: u64) -> impl futures::Stream<Item = Result<RecordBatch, QueryError>> + Send {
    stream::unfold((inner, n, true), |(mut inner, left, first)| async move {
        if left == 0 && !first {
            return None;
        }
        let item = inner.next().await?;
        let item = item.map(|b| if (b.num_rows() as u64) > left { b.slice(0, left as usize) } else { b });
        let left = match &item {
            Ok(b) => left - b.num_rows() as u64,
            Err(_) => 0,
        };
        Some((item, (inner, left, false)))
    })
}

/// From this offset on, a page whose first run a time bound cuts has that run's matching
/// rows counted (one narrow scan of the run) so that the offset can pass over it.
pub const COUNT_CUT_RUN_FROM: u64 = 1_000;

/// A stretch of time whose row groups overlap, and how many of its rows match.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Run {
    pub lo: f64,
    pub hi: f64,
    /// Unknown while a file in it has no rollup yet, or when a time bound cuts the run.
    pub rows: Option<u64>,
    /// A time bound of the filter lies inside the run.
    pub cut: bool,
}

/// The runs of `files` (see the module docs) that hold rows within `filters`' time range,
/// in `dir` order. Without label filters a run's count is its row groups' rows, and runs
/// are cut between row groups; with them, between whole files, counted by their rollups.
/// None at all when a file may have NULL timestamps (or no statistics saying it has none):
/// those rows sort last in either direction, not in any run.
pub fn runs_in_order(files: &[FileInfo], filters: &Filters, dir: OrderDir, rollups: &Rollups) -> Vec<Run> {
    if files.iter().any(|f| !f.no_null_times) {
        return Vec::new();
    }
    let labelled = filters.labels().iter().any(|(_, want)| want.is_some());
    let spans: Vec<Run> = if labelled {
        files
            .iter()
            .filter(|f| f.rows > 0)
            .map(|f| {
                let (lo, hi) = f.time_range();
                Run { lo, hi, rows: rollups.matching(f, filters).map(|n| n.max(0) as u64), cut: false }
            })
            .collect()
    } else {
        files
            .iter()
            .flat_map(|f| f.row_groups.iter())
            .filter(|g| g.rows > 0)
            .map(|g| Run { lo: g.ts_min, hi: g.ts_max, rows: Some(g.rows), cut: false })
            .collect()
    };
    let (start, end) = filters.time_bounds();
    let mut runs: Vec<Run> = merged(spans)
        .into_iter()
        .filter(|r| r.hi >= start && r.lo <= end)
        .map(|r| Run { cut: r.lo < start || r.hi > end, ..r })
        .collect();
    if dir == OrderDir::Desc {
        runs.reverse();
    }
    runs
}

/// Pass an offset over the leading `runs` it covers entirely. Returns `filters` narrowed to
/// the time after them (in `dir`) and the offset left within it, or `None` when no run can
/// be passed over: skipping stops at the first run that is cut, has an unknown count, or
/// holds part of the page.
pub fn pass_over(runs: &[Run], filters: &Filters, dir: OrderDir, offset: u64) -> Option<(Filters, u64)> {
    let (mut left, mut last) = (offset, None);
    for run in runs {
        if run.cut || !(run.lo.is_finite() && run.hi.is_finite()) {
            break;
        }
        match run.rows {
            Some(n) if left >= n => {
                left -= n;
                last = Some(run);
            }
            _ => break,
        }
    }
    let last = last?;
    let mut narrowed = filters.clone();
    match dir {
        OrderDir::Asc => narrowed.start_time = Some(last.hi.next_up()),
        OrderDir::Desc => narrowed.end_time = Some(last.lo.next_down()),
    }
    Some((narrowed, left))
}

/// `filters` limited to `run`'s time: what counts the matching rows of a cut run.
pub fn within(filters: &Filters, run: &Run) -> Filters {
    Filters {
        start_time: Some(filters.start_time.map_or(run.lo, |s| s.max(run.lo))),
        end_time: Some(filters.end_time.map_or(run.hi, |e| e.min(run.hi))),
        ..filters.clone()
    }
}

/// `spans` merged where they overlap or touch, in time order. A row group's bounds are its
/// rows' least and greatest timestamps, so two runs apart in time hold no row in common.
fn merged(mut spans: Vec<Run>) -> Vec<Run> {
    spans.sort_by(|a, b| a.lo.total_cmp(&b.lo));
    let mut out: Vec<Run> = Vec::new();
    for s in spans {
        match out.last_mut() {
            Some(r) if s.lo <= r.hi => {
                r.hi = r.hi.max(s.hi);
                r.rows = r.rows.zip(s.rows).map(|(a, b)| a + b);
            }
            _ => out.push(s),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::index::RowGroupStats;
    use crate::archive::rollup::Labels;

    /// Files `f0`, `f1`, … of one row group each, one time unit apart.
    fn files(rows: &[u64]) -> Vec<FileInfo> {
        rows.iter()
            .enumerate()
            .map(|(i, &rows)| {
                let name = format!("f{i}");
                let groups = vec![RowGroupStats { ts_min: i as f64, ts_max: i as f64 + 0.5, rows }];
                FileInfo { sorted_by_time: true, ..FileInfo::named(&name, groups) }
            })
            .collect()
    }

    fn labels(level: &str) -> Labels {
        [Some(level.to_string()), Some("api".to_string()), None]
    }

    #[test]
    fn filtered_offsets_skip_files_their_rollups_count() {
        // Newest first: f2, f1, f0. ERROR rows: f2 30, f1 40 (no rollup for f0).
        let files = files(&[100, 100, 100]);
        let rollups = Rollups::default();
        rollups.insert(files[2].meta.clone(), vec![(labels("ERROR"), 30), (labels("INFO"), 70)]);
        rollups.insert(files[1].meta.clone(), vec![(labels("ERROR"), 40), (labels("INFO"), 60)]);
        let errors = Filters { level: Some("ERROR".into()), ..Filters::default() };
        let units = sorted_export::plan(&files, &errors, OrderDir::Desc).unwrap();
        let file_of = |u: &[sorted_export::Unit]| u.iter().map(|u| u.file).collect::<Vec<_>>();
        let (left, offset) = skip_counted_files(&files, units.clone(), &errors, 75, &rollups);
        assert_eq!((file_of(&left), offset), (vec![0], 5), "f2 and f1 hold 70 of the 75 skipped");
        let (left, offset) = skip_counted_files(&files, units.clone(), &errors, 50, &rollups);
        assert_eq!((file_of(&left), offset), (vec![1, 0], 20), "the page starts inside f1");
        // f0 has no rollup: nothing past it is skipped, whatever the offset.
        let (left, offset) = skip_counted_files(&files, units, &errors, 500, &rollups);
        assert_eq!((file_of(&left), offset), (vec![0], 430));
        // A time bound inside f2: it must be read, so nothing is skipped.
        let cut = Filters { end_time: Some(2.25), ..errors.clone() };
        let units = sorted_export::plan(&files, &cut, OrderDir::Desc).unwrap();
        let (left, offset) = skip_counted_files(&files, units, &cut, 75, &rollups);
        assert_eq!((file_of(&left), offset), (vec![2, 1, 0], 75));
    }

    /// One file per `(start, end, rows)`, one row group each.
    fn spanning(spans: &[(f64, f64, u64)]) -> Vec<FileInfo> {
        spans
            .iter()
            .enumerate()
            .map(|(i, &(ts_min, ts_max, rows))| {
                let name = format!("s{i}");
                FileInfo::named(&name, vec![RowGroupStats { ts_min, ts_max, rows }])
            })
            .collect()
    }

    /// [`runs_in_order`] then [`pass_over`].
    fn skip(files: &[FileInfo], f: &Filters, dir: OrderDir, offset: u64, rollups: &Rollups) -> Option<(Filters, u64)> {
        pass_over(&runs_in_order(files, f, dir, rollups), f, dir, offset)
    }

    #[test]
    fn offsets_pass_over_whole_runs_of_overlapping_files() {
        // Three hours of two overlapping writer files each: runs [0, 60], [100, 170], [200, 260].
        let files = spanning(&[
            (0.0, 50.0, 10),
            (5.0, 60.0, 20),
            (100.0, 160.0, 30),
            (110.0, 170.0, 40),
            (200.0, 250.0, 50),
            (210.0, 260.0, 60),
        ]);
        let none = Rollups::default();
        let all = Filters::default();
        let (f, left) = skip(&files, &all, OrderDir::Asc, 35, &none).unwrap();
        assert_eq!((f.start_time, left), (Some(60f64.next_up()), 5), "the first run's 30 rows");
        let (f, left) = skip(&files, &all, OrderDir::Asc, 100, &none).unwrap();
        assert_eq!((f.start_time, left), (Some(170f64.next_up()), 0), "exactly two runs");
        let (f, left) = skip(&files, &all, OrderDir::Desc, 120, &none).unwrap();
        assert_eq!((f.end_time, f.start_time, left), (Some(200f64.next_down()), None, 10));
        assert_eq!(skip(&files, &all, OrderDir::Asc, 29, &none), None, "the page starts in the first run");
        // Runs wholly outside the time filter hold no matching row and are passed over for free.
        let from_second = Filters { start_time: Some(90.0), ..Filters::default() };
        let (f, left) = skip(&files, &from_second, OrderDir::Asc, 75, &none).unwrap();
        assert_eq!((f.start_time, left), (Some(170f64.next_up()), 5));
        // A file that may hold NULL timestamps (they sort last, in no run): no skipping.
        let mut nulls = files.clone();
        nulls[3].no_null_times = false;
        assert!(runs_in_order(&nulls, &all, OrderDir::Asc, &none).is_empty());
    }

    #[test]
    fn a_run_a_time_bound_cuts_is_passed_over_once_counted() {
        let files = spanning(&[(0.0, 50.0, 10), (5.0, 60.0, 20), (100.0, 160.0, 30), (110.0, 170.0, 40)]);
        let late = Filters { start_time: Some(30.0), ..Filters::default() };
        let mut runs = runs_in_order(&files, &late, OrderDir::Asc, &Rollups::default());
        assert!(runs[0].cut && !runs[1].cut);
        assert_eq!(pass_over(&runs, &late, OrderDir::Asc, 500), None, "its count is not known");
        let count = within(&late, &runs[0]);
        assert_eq!((count.start_time, count.end_time), (Some(30.0), Some(60.0)));
        runs[0] = Run { rows: Some(12), cut: false, ..runs[0] };
        let (f, left) = pass_over(&runs, &late, OrderDir::Asc, 50).unwrap();
        assert_eq!((f.start_time, left), (Some(60f64.next_up()), 38));
    }

    #[test]
    fn filtered_offsets_pass_over_runs_their_rollups_count() {
        let files = spanning(&[(0.0, 50.0, 100), (5.0, 60.0, 100), (100.0, 160.0, 100), (110.0, 170.0, 100)]);
        let errors = Filters { level: Some("ERROR".into()), ..Filters::default() };
        let rollups = Rollups::default();
        for (f, n) in files.iter().zip([7, 3, 20, 1]) {
            rollups.insert(f.meta.clone(), vec![(labels("ERROR"), n), (labels("INFO"), 100 - n)]);
        }
        let (f, left) = skip(&files, &errors, OrderDir::Asc, 12, &rollups).unwrap();
        assert_eq!((f.start_time, f.level.as_deref(), left), (Some(60f64.next_up()), Some("ERROR"), 2));
        let (f, left) = skip(&files, &errors, OrderDir::Desc, 25, &rollups).unwrap();
        assert_eq!((f.end_time, left), (Some(100f64.next_down()), 4));
        // A file without a rollup leaves its run's count unknown.
        let partial = Rollups::default();
        for f in &files[..3] {
            partial.insert(f.meta.clone(), vec![(labels("ERROR"), 5)]);
        }
        assert_eq!(skip(&files, &errors, OrderDir::Desc, 25, &partial), None);
        assert!(skip(&files, &errors, OrderDir::Asc, 12, &partial).is_some());
    }

    #[test]
    fn runs_merge_overlapping_and_touching_spans_only() {
        let r = |lo, hi| Run { lo, hi, rows: Some(1), cut: false };
        let merged = merged(vec![r(10.0, 20.0), r(0.0, 5.0), r(5.0, 7.0), r(20.0, 30.0), r(12.0, 13.0), r(31.0, 32.0)]);
        let bounds: Vec<(f64, f64, Option<u64>)> = merged.iter().map(|r| (r.lo, r.hi, r.rows)).collect();
        assert_eq!(bounds, vec![(0.0, 7.0, Some(2)), (10.0, 30.0, Some(3)), (31.0, 32.0, Some(1))]);
    }
}
