//! Row counts of the PostgreSQL log table per (time bucket, level, service, host), kept in
//! fletch so aggregates and counts cost what the new rows cost, not a scan of the table.
//!
//! Bucket widths are powers of two seconds: dividing a double by a power of two is exact,
//! so `floor(timestamp / width)` puts a row in the same bucket in PostgreSQL and here, and
//! a bucket's bounds `b * width` are exact too. A time range is answered from the buckets it
//! covers whole plus its two edges, which are read from PostgreSQL through the `timestamp`
//! index ([`TimeEdge`]); the edges are shorter than one bucket each.
//!
//! [`super::rollup_keeper`] builds and advances it; this file is the pure bookkeeping.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::query::Filters;

/// `(level, service, host)` of a row; `None` is SQL NULL.
pub type Labels = [Option<Arc<str>>; 3];

/// The most buckets a rollup is sized for; the width grows with the table's time span.
pub const MAX_BUCKETS: f64 = 100_000.0;

/// The bucket value the build query gives rows whose timestamp is NaN, infinite or beyond
/// ±10^12 s: they match some time filters in PostgreSQL (NaN sorts above every number) but
/// belong to no bucket, so their presence sends time-filtered questions to PostgreSQL.
pub const ODD_BUCKET: i64 = i64::MAX;

/// Timestamps the buckets cover, in seconds either side of the epoch.
pub const BUCKETED_SPAN: f64 = 1e12;

/// The bucket width for a table whose timestamps span `span` seconds: the smallest power
/// of two from 64 s up that keeps the buckets under [`MAX_BUCKETS`].
pub fn width_for_span(span: f64) -> f64 {
    let mut width = 64.0;
    while span.is_finite() && span / width > MAX_BUCKETS && width < 2f64.powi(40) {
        width *= 2.0;
    }
    width
}

/// The SQL expression of a row's bucket (see [`ODD_BUCKET`]; NULL for a NULL timestamp).
pub fn bucket_sql(width: f64) -> String {
    format!(
        r#"CASE WHEN "timestamp" IS NULL THEN NULL WHEN "timestamp" >= -{BUCKETED_SPAN:e} AND "timestamp" < {BUCKETED_SPAN:e} THEN floor("timestamp" / {width})::int8 ELSE {ODD_BUCKET} END"#
    )
}

/// A time range PostgreSQL must count: `lo <= timestamp` and `timestamp < hi` (or `<=`
/// when `hi_inclusive`); an absent bound is open.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeEdge {
    pub lo: Option<f64>,
    pub hi: Option<f64>,
    pub hi_inclusive: bool,
}

/// What the rollup knows about one question, and what is left for PostgreSQL.
#[derive(Debug)]
pub struct Partial {
    /// Counts per label combination, from whole buckets.
    pub counts: Vec<(Labels, u64)>,
    /// Time ranges still to be counted in PostgreSQL (rows with `id <= watermark` only).
    pub edges: Vec<TimeEdge>,
}

#[derive(Debug, Default)]
pub struct LabelRollup {
    width: f64,
    combos: Vec<Labels>,
    combo_ids: HashMap<Labels, u32>,
    /// Per bucket, `(combo, rows)` pairs: a bucket holds few of the combinations.
    buckets: BTreeMap<i64, Vec<(u32, u64)>>,
    /// Per combination: all rows, rows with a NULL timestamp, rows in no bucket.
    totals: Vec<u64>,
    untimed: Vec<u64>,
    odd: Vec<u64>,
    rows: u64,
}

impl LabelRollup {
    pub fn new(width: f64) -> Self {
        Self { width, ..Self::default() }
    }

    pub fn width(&self) -> f64 {
        self.width
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }

    fn combo(&mut self, labels: Labels) -> usize {
        if let Some(&id) = self.combo_ids.get(&labels) {
            return id as usize;
        }
        let id = self.combos.len();
        self.combos.push(labels.clone());
        self.combo_ids.insert(labels, id as u32);
        for v in [&mut self.totals, &mut self.untimed, &mut self.odd] {
            v.push(0);
        }
        id
    }

    /// Count `rows` rows of `labels` in `bucket` (`None`: NULL timestamp).
    pub fn add(&mut self, bucket: Option<i64>, labels: Labels, rows: u64) {
        let c = self.combo(labels);
        self.totals[c] += rows;
        self.rows += rows;
        match bucket {
            None => self.untimed[c] += rows,
            Some(ODD_BUCKET) => self.odd[c] += rows,
            Some(b) => {
                let cells = self.buckets.entry(b).or_default();
                match cells.iter_mut().find(|(id, _)| *id as usize == c) {
                    Some(cell) => cell.1 += rows,
                    None => cells.push((c as u32, rows)),
                }
            }
        }
    }

    /// Add every count of `other` (same width).
    pub fn absorb(&mut self, other: &LabelRollup) {
        debug_assert_eq!(self.width, other.width);
        for (b, cells) in &other.buckets {
            for (c, n) in cells {
                self.add(Some(*b), other.combos[*c as usize].clone(), *n);
            }
        }
        for (c, labels) in other.combos.iter().enumerate() {
            for (bucket, n) in [(None, other.untimed[c]), (Some(ODD_BUCKET), other.odd[c])] {
                if n > 0 {
                    self.add(bucket, labels.clone(), n);
                }
            }
        }
    }

    /// Counts for `f`, or `None` when only PostgreSQL can answer (a time filter while some
    /// rows' timestamps are in no bucket).
    pub fn partial(&self, f: &Filters) -> Option<Partial> {
        let wanted = |l: &Labels| f.labels_match(l.each_ref().map(|have| have.as_deref()));
        let mut sums = vec![0u64; self.combos.len()];
        let mut edges = Vec::new();
        if f.start_time.is_none() && f.end_time.is_none() {
            sums.copy_from_slice(&self.totals);
        } else {
            if self.odd.iter().any(|n| *n > 0) {
                return None;
            }
            let (first, last) = self.whole_buckets(f.start_time, f.end_time);
            if first > last {
                // Shorter than a bucket: all of it from PostgreSQL.
                edges.push(TimeEdge { lo: f.start_time, hi: f.end_time, hi_inclusive: true });
            } else {
                for cells in self.buckets.range(first..=last).map(|(_, c)| c) {
                    for (c, n) in cells {
                        sums[*c as usize] += n;
                    }
                }
                // An edge is skipped when a bound falls on a bucket boundary.
                if let Some(start) = f.start_time.filter(|s| first > i64::MIN && *s < first as f64 * self.width) {
                    edges.push(TimeEdge { lo: Some(start), hi: Some(first as f64 * self.width), hi_inclusive: false });
                }
                if let Some(end) = f.end_time.filter(|_| last < i64::MAX) {
                    edges.push(TimeEdge {
                        lo: Some((last + 1) as f64 * self.width),
                        hi: Some(end),
                        hi_inclusive: true,
                    });
                }
            }
        }
        let counts =
            self.combos.iter().zip(sums).filter(|(l, n)| *n > 0 && wanted(l)).map(|(l, n)| (l.clone(), n)).collect();
        Some(Partial { counts, edges })
    }

    /// The first and last bucket lying wholly inside `[start, end]`.
    fn whole_buckets(&self, start: Option<f64>, end: Option<f64>) -> (i64, i64) {
        let clamp = |b: f64| b.clamp(i64::MIN as f64 + 1.0, i64::MAX as f64 - 1.0) as i64;
        // Exact: the width is a power of two.
        let first = start.map_or(i64::MIN, |s| clamp((s / self.width).ceil()));
        // A bucket ends just below (b + 1) * width, so it lies inside when that is <= end.
        let last = end.map_or(i64::MAX, |e| clamp((e / self.width).floor()) - 1);
        (first, last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(level: &str, host: Option<&str>) -> Labels {
        [Some(level.into()), Some("api".into()), host.map(Into::into)]
    }

    fn rollup() -> LabelRollup {
        let mut r = LabelRollup::new(64.0);
        r.add(Some(0), labels("INFO", Some("h1")), 10); // [0, 64)
        r.add(Some(1), labels("INFO", Some("h1")), 5); // [64, 128)
        r.add(Some(1), labels("ERROR", None), 2);
        r.add(Some(2), labels("ERROR", None), 7); // [128, 192)
        r.add(None, labels("WARN", Some("h2")), 3);
        r
    }

    fn total(p: &Partial) -> u64 {
        p.counts.iter().map(|(_, n)| n).sum()
    }

    #[test]
    fn widths_are_powers_of_two_that_bound_the_buckets() {
        assert_eq!(width_for_span(3600.0), 64.0);
        assert_eq!(width_for_span(64.0 * MAX_BUCKETS), 64.0);
        assert_eq!(width_for_span(64.0 * MAX_BUCKETS + 1.0), 128.0);
        assert_eq!(width_for_span(f64::INFINITY), 64.0);
        let w = width_for_span(400.0 * 86_400.0);
        assert_eq!(w.log2().fract(), 0.0);
        assert!(400.0 * 86_400.0 / w <= MAX_BUCKETS);
    }

    #[test]
    fn no_time_filter_is_every_row_including_null_timestamps() {
        let r = rollup();
        let p = r.partial(&Filters::default()).unwrap();
        assert_eq!((total(&p), p.edges.len(), r.rows()), (27, 0, 27));
        let errors = r.partial(&Filters { level: Some("ERROR".into()), ..Filters::default() }).unwrap();
        assert_eq!(total(&errors), 9);
        let no_host: u64 = p.counts.iter().filter(|(l, _)| l[2].is_none()).map(|(_, n)| n).sum();
        assert_eq!(no_host, 9);
    }

    #[test]
    fn a_time_range_is_whole_buckets_plus_two_edges() {
        let r = rollup();
        let f = Filters { start_time: Some(10.0), end_time: Some(200.0), ..Filters::default() };
        let p = r.partial(&f).unwrap();
        // Buckets 1 and 2 lie inside [10, 200]; [10, 64) and [192, 200] are edges.
        assert_eq!(total(&p), 14);
        assert_eq!(
            p.edges,
            vec![
                TimeEdge { lo: Some(10.0), hi: Some(64.0), hi_inclusive: false },
                TimeEdge { lo: Some(192.0), hi: Some(200.0), hi_inclusive: true },
            ]
        );
    }

    #[test]
    fn bounds_on_bucket_boundaries_leave_only_the_inclusive_end() {
        let r = rollup();
        // start on a bucket boundary: no low edge rows outside the buckets.
        let p = r.partial(&Filters { start_time: Some(64.0), end_time: Some(128.0), ..Filters::default() }).unwrap();
        assert_eq!(total(&p), 7, "bucket 1 only");
        assert_eq!(p.edges, vec![TimeEdge { lo: Some(128.0), hi: Some(128.0), hi_inclusive: true }]);
        // Open ends have no edge on that side; NULL timestamps never match a time filter.
        let p = r.partial(&Filters { end_time: Some(63.5), ..Filters::default() }).unwrap();
        assert_eq!(total(&p), 0);
        assert_eq!(p.edges, vec![TimeEdge { lo: Some(0.0), hi: Some(63.5), hi_inclusive: true }]);
        let p = r.partial(&Filters { start_time: Some(0.0), ..Filters::default() }).unwrap();
        assert_eq!((total(&p), p.edges.len()), (24, 0));
    }

    #[test]
    fn a_range_inside_one_bucket_is_all_postgres() {
        let r = rollup();
        let f = Filters { start_time: Some(70.0), end_time: Some(100.0), ..Filters::default() };
        let p = r.partial(&f).unwrap();
        assert_eq!(total(&p), 0);
        assert_eq!(p.edges, vec![TimeEdge { lo: Some(70.0), hi: Some(100.0), hi_inclusive: true }]);
    }

    #[test]
    fn absorbing_a_rollup_adds_its_counts() {
        let mut r = rollup();
        let mut more = LabelRollup::new(64.0);
        more.add(Some(1), labels("ERROR", None), 4);
        more.add(Some(9), labels("DEBUG", Some("h3")), 1);
        more.add(None, labels("WARN", Some("h2")), 2);
        r.absorb(&more);
        assert_eq!(r.rows(), 34);
        let f = Filters { start_time: Some(64.0), end_time: Some(128.0), ..Filters::default() };
        assert_eq!(total(&r.partial(&f).unwrap()), 11);
        let warn = Filters { level: Some("WARN".into()), ..Filters::default() };
        assert_eq!(total(&r.partial(&warn).unwrap()), 5);
    }

    #[test]
    fn odd_timestamps_send_time_filters_to_postgres() {
        let mut r = rollup();
        r.add(Some(ODD_BUCKET), labels("INFO", None), 1);
        assert!(r.partial(&Filters { start_time: Some(0.0), ..Filters::default() }).is_none());
        assert_eq!(total(&r.partial(&Filters::default()).unwrap()), 28);
    }
}
