//! Per-file row counts by `(level, service, host)` for the Parquet archive.
//!
//! Archive files are immutable once written, so their counts per label combination can
//! be computed once (one narrow scan per file) and kept for as long as the file is
//! listed unchanged. An aggregate or filtered count then adds up the rollups of files
//! that lie wholly inside the requested time range and scans only the files that
//! straddle a bound. Decoding 10 M strings for every `GROUP BY` is what a plain engine
//! query spends its time on; this skips it.
//!
//! A file whose label combinations exceed [`MAX_COMBINATIONS`] gets no rollup and is
//! always scanned, so memory stays bounded whatever the data looks like.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use object_store::path::Path as StorePath;
use object_store::ObjectMeta;

use crate::archive::index::FileInfo;
use crate::query::{Filters, GroupBy};

/// Label combinations one file may have before it is left to scans.
pub const MAX_COMBINATIONS: usize = 10_000;

/// `(level, service, host)` of a group of rows.
pub type Labels = [Option<String>; 3];

/// Counts of one file; `None` when the file has too many combinations to keep.
pub type FileCounts = Option<Arc<Vec<(Labels, i64)>>>;

#[derive(Default)]
pub struct Rollups {
    files: Mutex<HashMap<StorePath, (ObjectMeta, FileCounts)>>,
}

/// How a query's files split against its time range.
pub struct Split<'a> {
    /// Wholly inside the range, with a rollup: answered from memory.
    pub summed: Vec<(Labels, i64)>,
    /// Straddling a bound, or without a rollup: must be scanned.
    pub scan: Vec<&'a FileInfo>,
}

impl Rollups {
    /// Files in `files` whose rollup is not known yet (new or changed since).
    pub fn missing<'a>(&self, files: &'a [FileInfo]) -> Vec<&'a FileInfo> {
        let known = self.files.lock().expect("rollup lock");
        files.iter().filter(|f| !known.get(&f.meta.location).is_some_and(|(m, _)| *m == f.meta)).collect()
    }

    /// Whether `f` has a rollup (absent when too many label combinations, or not built yet).
    pub fn built(&self, f: &FileInfo) -> bool {
        let known = self.files.lock().expect("rollup lock");
        known.get(&f.meta.location).is_some_and(|(m, c)| *m == f.meta && c.is_some())
    }

    pub fn insert(&self, meta: ObjectMeta, counts: Vec<(Labels, i64)>) {
        let counts = (counts.len() <= MAX_COMBINATIONS).then(|| Arc::new(counts));
        self.files.lock().expect("rollup lock").insert(meta.location.clone(), (meta, counts));
    }

    /// Forget files no longer listed.
    pub fn retain(&self, files: &[FileInfo]) {
        let listed: std::collections::HashSet<&StorePath> = files.iter().map(|f| &f.meta.location).collect();
        self.files.lock().expect("rollup lock").retain(|k, _| listed.contains(k));
    }

    /// Split `files` for `filters`: rollup rows (already filtered by label) of files wholly
    /// inside the time range, and the files that need a scan. Files wholly outside the
    /// range are dropped.
    pub fn split<'a>(&self, files: &'a [FileInfo], filters: &Filters) -> Split<'a> {
        let known = self.files.lock().expect("rollup lock");
        let mut out = Split { summed: Vec::new(), scan: Vec::new() };
        for f in files {
            match time_overlap(f, filters) {
                Overlap::None => continue,
                Overlap::Partial => out.scan.push(f),
                Overlap::Whole => match known.get(&f.meta.location) {
                    Some((m, Some(counts))) if *m == f.meta => {
                        out.summed.extend(counts.iter().filter(|(l, _)| labels_match(l, filters)).cloned());
                    }
                    _ => out.scan.push(f),
                },
            }
        }
        out
    }
}

#[derive(Debug, PartialEq)]
enum Overlap {
    None,
    Partial,
    Whole,
}

/// Where a file's rows lie against `start_time <= ts <= end_time`, from footer statistics.
fn time_overlap(f: &FileInfo, filters: &Filters) -> Overlap {
    let (lo, hi) = f.time_range();
    if f.row_groups.is_empty() {
        return if filters.start_time.is_none() && filters.end_time.is_none() {
            Overlap::Whole
        } else {
            Overlap::Partial
        };
    }
    let start = filters.start_time.unwrap_or(f64::NEG_INFINITY);
    let end = filters.end_time.unwrap_or(f64::INFINITY);
    if hi < start || lo > end {
        Overlap::None
    } else if lo >= start && hi <= end {
        Overlap::Whole
    } else {
        Overlap::Partial
    }
}

fn labels_match(l: &Labels, f: &Filters) -> bool {
    [&f.level, &f.service, &f.host].iter().zip(l.iter()).all(|(want, have)| match want {
        Some(w) => have.as_deref() == Some(w.as_str()),
        None => true,
    })
}

/// Add `rows` into per-key totals for `group_by` (a missing label is the `None` key).
pub fn add_grouped(totals: &mut HashMap<Option<String>, i64>, rows: &[(Labels, i64)], group_by: GroupBy) {
    let i = match group_by {
        GroupBy::Level => 0,
        GroupBy::Service => 1,
        GroupBy::Host => 2,
    };
    for (labels, n) in rows {
        *totals.entry(labels[i].clone()).or_default() += n;
    }
}

/// Totals sorted as the API returns them: count descending, then key.
pub fn sorted(totals: HashMap<String, i64>) -> Vec<(String, i64)> {
    let mut v: Vec<_> = totals.into_iter().collect();
    crate::schema::sort_groups(&mut v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::index::RowGroupStats;

    fn file(name: &str, lo: f64, hi: f64) -> FileInfo {
        FileInfo::with_row_groups(
            ObjectMeta {
                location: StorePath::from(name),
                last_modified: Default::default(),
                size: 1,
                e_tag: None,
                version: None,
            },
            vec![RowGroupStats { ts_min: lo, ts_max: hi, rows: 3 }],
        )
    }

    fn labels(l: &str, s: &str, h: &str) -> Labels {
        [Some(l.into()), Some(s.into()), Some(h.into())]
    }

    #[test]
    fn whole_files_are_summed_partial_ones_scanned_outside_ones_dropped() {
        let files = vec![file("a", 0.0, 10.0), file("b", 10.0, 20.0), file("c", 20.0, 30.0), file("d", 30.0, 40.0)];
        let r = Rollups::default();
        for f in &files {
            r.insert(f.meta.clone(), vec![(labels("ERROR", "api", "h1"), 2), (labels("INFO", "api", "h2"), 1)]);
        }
        // d is missing a rollup after this change of its metadata.
        let mut changed = files.clone();
        changed[3].meta.size = 2;
        let f =
            Filters { level: Some("ERROR".into()), start_time: Some(5.0), end_time: Some(40.0), ..Default::default() };
        let split = r.split(&changed, &f);
        let scanned: Vec<&str> = split.scan.iter().map(|f| f.meta.location.as_ref()).collect();
        assert_eq!(scanned, vec!["a", "d"]);
        assert_eq!(split.summed.len(), 2, "b and c, ERROR rows only");
        let mut totals = HashMap::new();
        add_grouped(&mut totals, &split.summed, GroupBy::Host);
        assert_eq!(totals, HashMap::from([(Some("h1".to_string()), 4)]));
        assert_eq!(r.missing(&changed).len(), 1);

        let outside = Filters { start_time: Some(100.0), ..Default::default() };
        let split = r.split(&files, &outside);
        assert!(split.summed.is_empty() && split.scan.is_empty());
    }

    #[test]
    fn missing_labels_group_apart() {
        let rows = vec![
            ([Some("INFO".into()), None, None], 2),
            (labels("INFO", "api", "h1"), 2),
            ([None, None, Some("h1".into())], 5),
        ];
        let mut totals = HashMap::new();
        add_grouped(&mut totals, &rows, GroupBy::Service);
        assert_eq!(totals, HashMap::from([(None, 7), (Some("api".to_string()), 2)]));
        let mut totals = HashMap::new();
        add_grouped(&mut totals, &rows, GroupBy::Level);
        assert_eq!(totals, HashMap::from([(None, 5), (Some("INFO".to_string()), 4)]));
    }

    #[test]
    fn too_many_combinations_means_always_scanned() {
        let r = Rollups::default();
        let f = file("a", 0.0, 1.0);
        let many = (0..=MAX_COMBINATIONS).map(|i| (labels("INFO", "s", &i.to_string()), 1)).collect();
        r.insert(f.meta.clone(), many);
        let files = vec![f];
        assert!(r.missing(&files).is_empty(), "known, just not kept");
        assert_eq!(r.split(&files, &Filters::default()).scan.len(), 1);
    }
}
