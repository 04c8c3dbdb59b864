//! The normalized query description: what every protocol front end produces and every
//! source consumes. Parsing from HTTP-style parameters lives here too, so the HTTP facade
//! and Flight tickets validate identically.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::error::QueryError;

/// Hard cap on `limit` for the paged `logs` endpoint (exports have no cap).
pub const MAX_PAGE_LIMIT: u64 = 10_000;
pub const DEFAULT_PAGE_LIMIT: u64 = 100;
/// Deepest `offset` accepted. Skipping rows costs a walk over them (PostgreSQL reads the
/// index that far); pages deeper than this are better read with a time range or an export.
pub const MAX_OFFSET: u64 = 10_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Postgres,
    Hdfs,
}

impl Source {
    pub const ALLOWED: &'static [&'static str] = &["postgres", "hdfs"];

    pub fn parse(s: &str) -> Result<Self, QueryError> {
        match s {
            "postgres" => Ok(Source::Postgres),
            "hdfs" => Ok(Source::Hdfs),
            other => Err(QueryError::invalid("source", format!("unknown source `{other}`"), Some(Self::ALLOWED))),
        }
    }

    /// Name used in URLs, metrics and admission lanes.
    pub fn name(self) -> &'static str {
        match self {
            Source::Postgres => "postgres",
            Source::Hdfs => "hdfs",
        }
    }

    /// Name used in the `source` field of the old API's JSON responses.
    pub fn response_name(self) -> &'static str {
        match self {
            Source::Postgres => "postgresql",
            Source::Hdfs => "hdfs",
        }
    }
}

/// A column that may appear in `order_by` (whitelist: these names are also SQL identifiers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderBy {
    Timestamp,
    Level,
    Service,
    CreatedAt,
    Id,
}

impl OrderBy {
    pub const ALLOWED: &'static [&'static str] = &["timestamp", "level", "service", "created_at", "id"];
    pub fn parse(s: &str) -> Result<Self, QueryError> {
        Ok(match s {
            "timestamp" => OrderBy::Timestamp,
            "level" => OrderBy::Level,
            "service" => OrderBy::Service,
            "created_at" => OrderBy::CreatedAt,
            "id" => OrderBy::Id,
            other => {
                return Err(QueryError::invalid("order_by", format!("cannot order by `{other}`"), Some(Self::ALLOWED)))
            }
        })
    }
    pub fn column(self) -> &'static str {
        Self::ALLOWED[self as usize]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderDir {
    Asc,
    Desc,
}

impl OrderDir {
    pub const ALLOWED: &'static [&'static str] = &["asc", "desc"];
    pub fn parse(s: &str) -> Result<Self, QueryError> {
        match s.to_ascii_lowercase().as_str() {
            "asc" => Ok(OrderDir::Asc),
            "desc" => Ok(OrderDir::Desc),
            other => Err(QueryError::invalid("order_dir", format!("unknown direction `{other}`"), Some(Self::ALLOWED))),
        }
    }
    pub fn sql(self) -> &'static str {
        match self {
            OrderDir::Asc => "ASC",
            OrderDir::Desc => "DESC",
        }
    }
}

/// A column that may appear in `group_by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupBy {
    Level,
    Service,
    Host,
}

impl GroupBy {
    pub const ALLOWED: &'static [&'static str] = &["level", "service", "host"];
    pub fn parse(s: &str) -> Result<Self, QueryError> {
        Ok(match s {
            "level" => GroupBy::Level,
            "service" => GroupBy::Service,
            "host" => GroupBy::Host,
            other => {
                return Err(QueryError::invalid("group_by", format!("cannot group by `{other}`"), Some(Self::ALLOWED)))
            }
        })
    }
    pub fn column(self) -> &'static str {
        Self::ALLOWED[self as usize]
    }

    /// Where this label sits in `(level, service, host)`, the order rollups keep labels in
    /// (see [`Filters::labels`]).
    pub fn label_index(self) -> usize {
        self as usize
    }
}

/// Row filters shared by every query kind. Times are epoch seconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filters {
    pub level: Option<String>,
    pub service: Option<String>,
    pub host: Option<String>,
    pub start_time: Option<f64>,
    pub end_time: Option<f64>,
}

impl Filters {
    pub fn is_empty(&self) -> bool {
        *self == Filters::default()
    }

    /// `start_time ..= end_time`, an open side as an infinity.
    pub fn time_bounds(&self) -> (f64, f64) {
        (self.start_time.unwrap_or(f64::NEG_INFINITY), self.end_time.unwrap_or(f64::INFINITY))
    }

    /// The label filters by column, in label order `(level, service, host)`.
    pub fn labels(&self) -> [(&'static str, Option<&str>); 3] {
        [("level", self.level.as_deref()), ("service", self.service.as_deref()), ("host", self.host.as_deref())]
    }

    /// Whether a row whose labels are `have` (label order; `None` is NULL) passes the label
    /// filters. As in SQL, a NULL label matches no filter on it.
    pub fn labels_match(&self, have: [Option<&str>; 3]) -> bool {
        self.labels().iter().zip(have).all(|((_, want), have)| want.is_none_or(|w| have == Some(w)))
    }

    /// Stable text form, used as part of cache and single-flight keys.
    pub fn key(&self) -> String {
        let mut k = String::new();
        let _ = write!(
            k,
            "l={:?};s={:?};h={:?};st={:?};et={:?}",
            self.level,
            self.service,
            self.host,
            self.start_time.map(f64::to_bits),
            self.end_time.map(f64::to_bits)
        );
        k
    }
}

/// How `total_count` is obtained for a page of rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CountMode {
    /// Shared exact count if one is cached, else the planner's estimate now and an exact
    /// count computed in the background for the next request (the default).
    Auto,
    /// Exact count, computed once for all concurrent requests and cached briefly.
    Exact,
    /// The planner's estimate (PostgreSQL) or metadata count (Parquet, exact for free).
    Estimate,
    /// No count at all: `total_count` is null.
    None,
}

impl CountMode {
    pub const ALLOWED: &'static [&'static str] = &["auto", "exact", "estimate", "none"];
    pub fn parse(s: &str) -> Result<Self, QueryError> {
        Ok(match s {
            "auto" => CountMode::Auto,
            "exact" => CountMode::Exact,
            "estimate" => CountMode::Estimate,
            "none" => CountMode::None,
            other => {
                return Err(QueryError::invalid("count", format!("unknown count mode `{other}`"), Some(Self::ALLOWED)))
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RowsQuery {
    pub filters: Filters,
    /// `None` means no limit (exports).
    pub limit: Option<u64>,
    pub offset: u64,
    pub order_by: OrderBy,
    pub order_dir: OrderDir,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AggregateQuery {
    pub filters: Filters,
    pub group_by: GroupBy,
}

/// Parameters as received (query string or ticket), in order, duplicates kept.
pub type Params = Vec<(String, String)>;

/// Reject parameters outside `allowed`, and repeated ones: a typo must not silently
/// turn into "no filter".
pub fn check_params(params: &Params, allowed: &[&str]) -> Result<BTreeMap<String, String>, QueryError> {
    let mut out = BTreeMap::new();
    for (k, v) in params {
        if !allowed.contains(&k.as_str()) {
            return Err(QueryError::UnknownParam {
                param: k.clone(),
                allowed: allowed.iter().map(|s| s.to_string()).collect(),
            });
        }
        if out.insert(k.clone(), v.clone()).is_some() {
            return Err(QueryError::invalid(k, "given more than once", None));
        }
    }
    Ok(out)
}

fn parse_time(map: &BTreeMap<String, String>, name: &str) -> Result<Option<f64>, QueryError> {
    match map.get(name) {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => match v.trim().parse::<f64>() {
            Ok(t) if t.is_finite() => Ok(Some(t)),
            _ => Err(QueryError::invalid(
                name,
                format!("`{v}` is not a number of epoch seconds (e.g. 1700000000 or 1700000000.5)"),
                None,
            )),
        },
    }
}

fn parse_text_filter(map: &BTreeMap<String, String>, name: &str, max_len: usize) -> Result<Option<String>, QueryError> {
    match map.get(name) {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) if v.len() > max_len => {
            Err(QueryError::invalid(name, format!("longer than {max_len} characters"), None))
        }
        Some(v) => Ok(Some(v.clone())),
    }
}

pub fn parse_filters(map: &BTreeMap<String, String>) -> Result<Filters, QueryError> {
    let f = Filters {
        level: parse_text_filter(map, "level", 10)?,
        service: parse_text_filter(map, "service", 50)?,
        host: parse_text_filter(map, "host", 100)?,
        start_time: parse_time(map, "start_time")?,
        end_time: parse_time(map, "end_time")?,
    };
    if let (Some(s), Some(e)) = (f.start_time, f.end_time) {
        if s > e {
            return Err(QueryError::invalid("start_time", format!("start_time ({s}) is after end_time ({e})"), None));
        }
    }
    Ok(f)
}

fn parse_u64(map: &BTreeMap<String, String>, name: &str) -> Result<Option<u64>, QueryError> {
    match map.get(name) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<i64>()
            .map_err(|_| QueryError::invalid(name, format!("`{v}` is not an integer"), None))
            .and_then(|n| {
                if n < 0 {
                    Err(QueryError::invalid(name, format!("must not be negative (got {n})"), None))
                } else {
                    Ok(Some(n as u64))
                }
            }),
    }
}

pub const LOGS_PARAMS: &[&str] =
    &["level", "service", "host", "start_time", "end_time", "limit", "offset", "order_by", "order_dir", "count"];
pub const EXPORT_PARAMS: &[&str] =
    &["level", "service", "host", "start_time", "end_time", "limit", "offset", "order_by", "order_dir", "format"];
pub const AGG_PARAMS: &[&str] = &["level", "service", "host", "start_time", "end_time", "group_by"];

/// `logs` page: limit defaults to 100 and must lie in 1..=10000.
pub fn parse_rows(map: &BTreeMap<String, String>, paged: bool) -> Result<RowsQuery, QueryError> {
    let limit = match parse_u64(map, "limit")? {
        None if paged => Some(DEFAULT_PAGE_LIMIT),
        None => None,
        Some(n) if paged && !(1..=MAX_PAGE_LIMIT).contains(&n) => {
            return Err(QueryError::invalid(
                "limit",
                format!("must be between 1 and {MAX_PAGE_LIMIT} (got {n}); use /logs/export for more rows"),
                None,
            ))
        }
        Some(0) => return Err(QueryError::invalid("limit", "must be at least 1", None)),
        Some(n) => Some(n),
    };
    Ok(RowsQuery {
        filters: parse_filters(map)?,
        limit,
        offset: match parse_u64(map, "offset")? {
            Some(n) if n > MAX_OFFSET => {
                let message = format!(
                    "must be at most {MAX_OFFSET} (got {n}); narrow the rows with start_time/end_time or use /logs/export"
                );
                return Err(QueryError::invalid("offset", message, None));
            }
            n => n.unwrap_or(0),
        },
        order_by: map.get("order_by").map(|s| OrderBy::parse(s)).transpose()?.unwrap_or(OrderBy::Timestamp),
        order_dir: map.get("order_dir").map(|s| OrderDir::parse(s)).transpose()?.unwrap_or(OrderDir::Desc),
    })
}

pub fn parse_aggregate(map: &BTreeMap<String, String>) -> Result<AggregateQuery, QueryError> {
    let group_by = match map.get("group_by") {
        Some(g) => GroupBy::parse(g)?,
        None => return Err(QueryError::invalid("group_by", "is required", Some(GroupBy::ALLOWED))),
    };
    Ok(AggregateQuery { filters: parse_filters(map)?, group_by })
}

pub fn parse_count_mode(map: &BTreeMap<String, String>) -> Result<CountMode, QueryError> {
    map.get("count").map(|s| CountMode::parse(s)).transpose().map(|m| m.unwrap_or(CountMode::Auto))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_filters_match_as_sql_does() {
        let f = Filters { level: Some("ERROR".into()), host: Some("h1".into()), ..Filters::default() };
        assert!(f.labels_match([Some("ERROR"), None, Some("h1")]), "no service filter: any service");
        assert!(!f.labels_match([Some("ERROR"), Some("api"), None]), "a NULL host matches no host filter");
        assert!(!f.labels_match([Some("INFO"), Some("api"), Some("h1")]));
        assert!(Filters::default().labels_match([None, None, None]));
        assert_eq!(GroupBy::Host.label_index(), 2);
        assert_eq!(f.labels()[GroupBy::Host.label_index()], ("host", Some("h1")));
    }

    fn p(pairs: &[(&str, &str)]) -> Params {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn page_defaults_and_bounds() {
        let m = check_params(&p(&[]), LOGS_PARAMS).unwrap();
        let q = parse_rows(&m, true).unwrap();
        assert_eq!(q.limit, Some(100));
        assert_eq!(q.order_by, OrderBy::Timestamp);
        assert_eq!(q.order_dir, OrderDir::Desc);
        for bad in ["0", "10001", "-1", "ten"] {
            let m = check_params(&p(&[("limit", bad)]), LOGS_PARAMS).unwrap();
            assert!(parse_rows(&m, true).is_err(), "limit={bad} accepted");
        }
        let m = check_params(&p(&[("limit", "10000")]), LOGS_PARAMS).unwrap();
        assert_eq!(parse_rows(&m, true).unwrap().limit, Some(10_000));
    }

    #[test]
    fn unknown_and_repeated_params_are_rejected() {
        assert!(matches!(check_params(&p(&[("levle", "ERROR")]), LOGS_PARAMS), Err(QueryError::UnknownParam { .. })));
        assert!(check_params(&p(&[("level", "A"), ("level", "B")]), LOGS_PARAMS).is_err());
    }

    #[test]
    fn times_must_be_numbers_in_order() {
        let m = check_params(&p(&[("start_time", "yesterday")]), LOGS_PARAMS).unwrap();
        assert!(parse_filters(&m).is_err());
        let m = check_params(&p(&[("start_time", "10"), ("end_time", "5")]), LOGS_PARAMS).unwrap();
        assert!(parse_filters(&m).is_err());
        let m = check_params(&p(&[("start_time", "1.5"), ("end_time", "5")]), LOGS_PARAMS).unwrap();
        assert_eq!(parse_filters(&m).unwrap().start_time, Some(1.5));
    }
}
