//! The time a hive partition directory covers: `year=2026/month=1/day=12/hour=4` holds
//! the rows whose time, in the zone the writer used, falls in that hour. Spark derives
//! these values from `event_time` in its session time zone, so the zone is a setting
//! (`parquet.partition_time_zone`, default UTC). A time-range query skips directories
//! wholly outside its range from their names alone; the index checks every file's
//! `timestamp` statistics against its directory and turns this pruning off if they ever
//! disagree (a wrong zone setting costs speed, never rows).

use chrono::{LocalResult, NaiveDate, TimeZone};
use chrono_tz::Tz;

/// `[start, end)` in epoch seconds of the directory a file sits in, when its partition
/// values include `year` (then `month`, `day`, `hour`, each optional after the first
/// missing one).
pub fn window(values: &[(String, Option<String>)], zone: Tz) -> Option<(f64, f64)> {
    let get = |k: &str| -> Option<u32> {
        values.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)).and_then(|(_, v)| v.as_deref()?.parse().ok())
    };
    let year = i32::try_from(get("year")?).ok()?;
    let (month, day, hour) = (get("month"), get("day"), get("hour"));
    let (start, end) = match (month, day, hour) {
        (Some(m), Some(d), Some(h)) => {
            let t = NaiveDate::from_ymd_opt(year, m, d)?.and_hms_opt(h, 0, 0)?;
            (t, t + chrono::Duration::hours(1))
        }
        (Some(m), Some(d), None) => {
            let t = NaiveDate::from_ymd_opt(year, m, d)?.and_hms_opt(0, 0, 0)?;
            (t, t + chrono::Duration::days(1))
        }
        (Some(m), None, _) => {
            let t = NaiveDate::from_ymd_opt(year, m, 1)?.and_hms_opt(0, 0, 0)?;
            let next =
                if m == 12 { NaiveDate::from_ymd_opt(year + 1, 1, 1) } else { NaiveDate::from_ymd_opt(year, m + 1, 1) };
            (t, next?.and_hms_opt(0, 0, 0)?)
        }
        (None, ..) => {
            let t = NaiveDate::from_ymd_opt(year, 1, 1)?.and_hms_opt(0, 0, 0)?;
            (t, NaiveDate::from_ymd_opt(year + 1, 1, 1)?.and_hms_opt(0, 0, 0)?)
        }
    };
    // A local time that occurs twice (clocks going back) covers both; one that never
    // occurs (clocks going forward) starts where the zone resumes.
    let first = |t: chrono::NaiveDateTime| match zone.from_local_datetime(&t) {
        LocalResult::Single(x) | LocalResult::Ambiguous(x, _) => Some(x.timestamp()),
        LocalResult::None => {
            zone.from_local_datetime(&(t + chrono::Duration::hours(1))).earliest().map(|x| x.timestamp())
        }
    };
    let last = |t: chrono::NaiveDateTime| match zone.from_local_datetime(&t) {
        LocalResult::Single(x) | LocalResult::Ambiguous(_, x) => Some(x.timestamp()),
        LocalResult::None => {
            zone.from_local_datetime(&(t + chrono::Duration::hours(1))).earliest().map(|x| x.timestamp())
        }
    };
    Some((first(start)? as f64, last(end)? as f64))
}

/// The zone named by the setting (`UTC`, `Asia/Kolkata`, …).
pub fn parse_zone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>().map_err(|_| format!("`{name}` is not a time zone name (e.g. UTC, Europe/Berlin)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hour(y: &str, m: &str, d: &str, h: &str) -> Vec<(String, Option<String>)> {
        [("year", y), ("month", m), ("day", d), ("hour", h)]
            .iter()
            .map(|(k, v)| (k.to_string(), Some(v.to_string())))
            .collect()
    }

    #[test]
    fn an_hour_directory_covers_one_hour_in_its_zone() {
        // 2026-01-12T04:00:00Z
        assert_eq!(window(&hour("2026", "1", "12", "4"), Tz::UTC), Some((1768190400.0, 1768194000.0)));
        // Kolkata is UTC+05:30: hour=9 starts at 03:30 UTC.
        let kolkata = parse_zone("Asia/Kolkata").unwrap();
        assert_eq!(window(&hour("2026", "1", "12", "9"), kolkata), Some((1768188600.0, 1768192200.0)));
        let day = &hour("2026", "1", "12", "4")[..3];
        assert_eq!(window(day, Tz::UTC), Some((1768176000.0, 1768262400.0)));
        assert_eq!(window(&[], Tz::UTC), None);
        assert!(parse_zone("Mars/Olympus").is_err());
    }

    #[test]
    fn clock_changes_widen_or_shift_the_hour() {
        let berlin = parse_zone("Europe/Berlin").unwrap();
        // 2026-10-25 02:00 happens twice in Berlin: the directory spans two hours.
        let (a, b) = window(&hour("2026", "10", "25", "2"), berlin).unwrap();
        assert_eq!(b - a, 7200.0);
    }
}
