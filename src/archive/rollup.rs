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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use object_store::path::Path as StorePath;
use object_store::ObjectMeta;

use crate::archive::index::FileInfo;
use crate::query::{Filters, GroupBy};

/// Label combinations one file may have before it is left to scans.
pub const MAX_COMBINATIONS: usize = 10_000;

/// `(level, service, host)` of a group of rows.
pub type Labels = [Option<String>; 3];

/// Row counts per label combination, of one file or added up over several.
pub type Summed = Arc<Vec<(Labels, i64)>>;

/// Counts of one file; `None` when the file has too many combinations to keep.
pub type FileCounts = Option<Summed>;

#[derive(Default)]
pub struct Rollups {
    files: Mutex<HashMap<StorePath, (ObjectMeta, FileCounts)>>,
    /// Bumped whenever `files` changes: merged sums are reused only while it and the
    /// listing's generation stay the same.
    version: AtomicU64,
    merged: Mutex<Merged>,
}

/// Sums over whole partition directories and over the whole archive, made on first use
/// for one `(listing generation, rollup version)`. Without them an aggregate adds up
/// every file's combinations on every request: its cost followed the file count (188
/// hour-partition files cost four times 20 large ones), not the number of groups.
#[derive(Default)]
struct Merged {
    key: (u64, u64),
    dirs: HashMap<String, Summed>,
    all: Option<Summed>,
}

/// How a query's files split against its time range.
pub struct Split<'a> {
    /// Rollups of the files wholly inside the range (per file, per directory or of the
    /// whole archive), before label filters (see [`Split::rows`]).
    parts: Vec<Summed>,
    /// Straddling a bound, or without a rollup: must be scanned.
    pub scan: Vec<&'a FileInfo>,
}

impl Split<'_> {
    /// The rollup rows that match the label filters.
    pub fn rows<'s>(&'s self, filters: &'s Filters) -> impl Iterator<Item = &'s (Labels, i64)> + 's {
        self.parts.iter().flat_map(|p| p.iter()).filter(move |(l, _)| labels_match(l, filters))
    }
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

    /// Rows of `f` whose labels match `filters` (time bounds not considered), when its
    /// rollup is known.
    pub fn matching(&self, f: &FileInfo, filters: &Filters) -> Option<i64> {
        let known = self.files.lock().expect("rollup lock");
        match known.get(&f.meta.location) {
            Some((m, Some(counts))) if *m == f.meta => {
                Some(counts.iter().filter(|(l, _)| labels_match(l, filters)).map(|(_, n)| n).sum())
            }
            _ => None,
        }
    }

    pub fn insert(&self, meta: ObjectMeta, counts: Vec<(Labels, i64)>) {
        let counts = (counts.len() <= MAX_COMBINATIONS).then(|| Arc::new(counts));
        self.files.lock().expect("rollup lock").insert(meta.location.clone(), (meta, counts));
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    /// Forget files no longer listed.
    pub fn retain(&self, files: &[FileInfo]) {
        let listed: std::collections::HashSet<&StorePath> = files.iter().map(|f| &f.meta.location).collect();
        let mut known = self.files.lock().expect("rollup lock");
        let before = known.len();
        known.retain(|k, _| listed.contains(k));
        if known.len() != before {
            self.version.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Split `files` (the whole listing of `generation`) for `filters`: the rollups of
    /// files wholly inside the time range, and the files that need a scan. Files wholly
    /// outside the range are dropped. A directory whose files are all summed contributes
    /// one merged rollup, and an archive without time bounds one rollup in all.
    pub fn split<'a>(&self, files: &'a [FileInfo], filters: &Filters, generation: u64) -> Split<'a> {
        let known = self.files.lock().expect("rollup lock");
        let mut merged = self.merged.lock().expect("merged rollup lock");
        let key = (generation, self.version.load(Ordering::Acquire));
        if merged.key != key {
            *merged = Merged { key, ..Merged::default() };
        }
        let unbounded = filters.start_time.is_none() && filters.end_time.is_none();
        if let (true, Some(all)) = (unbounded, &merged.all) {
            return Split { parts: vec![all.clone()], scan: Vec::new() };
        }
        let counts_of = |f: &FileInfo| match known.get(&f.meta.location) {
            Some((m, Some(counts))) if *m == f.meta => Some(counts),
            _ => None,
        };
        let mut out = Split { parts: Vec::new(), scan: Vec::new() };
        let dirs = by_directory(files);
        let mut whole_dirs = 0;
        for (dir, dir_files) in &dirs {
            let whole = |f: &&FileInfo| time_overlap(f, filters) == Overlap::Whole && counts_of(f).is_some();
            if dir_files.iter().all(whole) {
                whole_dirs += 1;
                let summed = merged
                    .dirs
                    .entry(dir.to_string())
                    .or_insert_with(|| merge(dir_files.iter().filter_map(|f| counts_of(f))))
                    .clone();
                out.parts.push(summed);
                continue;
            }
            for &f in dir_files {
                match time_overlap(f, filters) {
                    Overlap::None => continue,
                    Overlap::Partial => out.scan.push(f),
                    Overlap::Whole => match counts_of(f) {
                        Some(counts) => out.parts.push(counts.clone()),
                        None => out.scan.push(f),
                    },
                }
            }
        }
        if unbounded && whole_dirs == dirs.len() {
            let all = merge(out.parts.iter());
            merged.all = Some(all.clone());
            out.parts = vec![all];
        }
        out
    }
}

/// Files grouped by the directory that holds them, in listing order.
fn by_directory(files: &[FileInfo]) -> Vec<(&str, Vec<&FileInfo>)> {
    let mut dirs: Vec<(&str, Vec<&FileInfo>)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for f in files {
        let dir = f.meta.location.as_ref().rsplit_once('/').map_or("", |(d, _)| d);
        let i = *index.entry(dir).or_insert_with(|| {
            dirs.push((dir, Vec::new()));
            dirs.len() - 1
        });
        dirs[i].1.push(f);
    }
    dirs
}

/// Several rollups added up per label combination.
fn merge<'a>(parts: impl Iterator<Item = &'a Summed>) -> Summed {
    let mut totals: HashMap<&Labels, i64> = HashMap::new();
    for part in parts {
        for (labels, n) in part.iter() {
            *totals.entry(labels).or_default() += n;
        }
    }
    Arc::new(totals.into_iter().map(|(l, n)| (l.clone(), n)).collect())
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
    let (start, end) = filters.time_bounds();
    if hi < start || lo > end {
        Overlap::None
    } else if lo >= start && hi <= end {
        Overlap::Whole
    } else {
        Overlap::Partial
    }
}

fn labels_match(l: &Labels, f: &Filters) -> bool {
    f.labels_match(l.each_ref().map(|have| have.as_deref()))
}

/// Add `rows` into per-key totals for `group_by` (a missing label is the `None` key).
pub fn add_grouped<'a>(
    totals: &mut HashMap<Option<String>, i64>,
    rows: impl IntoIterator<Item = &'a (Labels, i64)>,
    group_by: GroupBy,
) {
    let i = group_by.label_index();
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
        let split = r.split(&changed, &f, 1);
        let scanned: Vec<&str> = split.scan.iter().map(|f| f.meta.location.as_ref()).collect();
        assert_eq!(scanned, vec!["a", "d"]);
        assert_eq!(split.rows(&f).count(), 2, "b and c, ERROR rows only");
        let mut totals = HashMap::new();
        add_grouped(&mut totals, split.rows(&f), GroupBy::Host);
        assert_eq!(totals, HashMap::from([(Some("h1".to_string()), 4)]));
        assert_eq!(r.missing(&changed).len(), 1);

        let outside = Filters { start_time: Some(100.0), ..Default::default() };
        let split = r.split(&files, &outside, 1);
        assert!(split.rows(&outside).next().is_none() && split.scan.is_empty());
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
        assert_eq!(r.split(&files, &Filters::default(), 1).scan.len(), 1);
    }

    #[test]
    fn whole_directories_and_the_whole_archive_are_summed_once_and_kept_current() {
        let files = vec![
            file("h=0/a", 0.0, 9.0),
            file("h=0/b", 1.0, 9.0),
            file("h=1/c", 10.0, 19.0),
            file("h=1/d", 11.0, 19.0),
        ];
        let r = Rollups::default();
        for f in &files[..3] {
            r.insert(f.meta.clone(), vec![(labels("ERROR", "api", "h1"), 2), (labels("INFO", "api", "h2"), 1)]);
        }
        let total = |split: &Split, f: &Filters| split.rows(f).map(|(_, n)| n).sum::<i64>();
        // h=1/d has no rollup yet: h=0 is one merged part, c a part of its own, d scanned.
        let all = Filters::default();
        let split = r.split(&files, &all, 1);
        assert_eq!((split.parts.len(), split.scan.len(), total(&split, &all)), (2, 1, 9));
        // Its rollup arrives: the whole archive becomes one part, label filters still apply.
        r.insert(files[3].meta.clone(), vec![(labels("ERROR", "web", "h3"), 5)]);
        let split = r.split(&files, &all, 1);
        assert_eq!((split.parts.len(), split.scan.len(), total(&split, &all)), (1, 0, 14));
        let errors = Filters { level: Some("ERROR".into()), ..Default::default() };
        assert_eq!(total(&r.split(&files, &errors, 1), &errors), 11);
        // A time range holding h=1 wholly and part of h=0: h=1 merged, a and b scanned.
        let late = Filters { start_time: Some(5.0), ..Default::default() };
        let split = r.split(&files, &late, 1);
        let scanned: Vec<&str> = split.scan.iter().map(|f| f.meta.location.as_ref()).collect();
        assert_eq!((split.parts.len(), scanned, total(&split, &late)), (1, vec!["h=0/a", "h=0/b"], 8));
        // A new listing without h=0/a: nothing merged for the old one is reused.
        r.retain(&files[1..]);
        let split = r.split(&files[1..], &all, 2);
        assert_eq!((split.parts.len(), total(&split, &all)), (1, 11));
    }
}
