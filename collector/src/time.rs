//! Durations and times as the collector's configuration and APIs write them, in one place.
//!
//! | function | accepts | used by |
//! |---|---|---|
//! | [`parse_duration_ns`] | `250ms`, `1.5s`, `2m`; a plain number is milliseconds | native API (`min_duration`, `window`, `lookback`) |
//! | [`parse_go_duration_ns`] | Go durations: `300ms`, `2h45m`, `1µs` | Jaeger APIs (`minDuration`, `query.duration_min`) |
//! | [`parse_collector_duration`] | `30s`, `500ms`, `1m`, `250us`; a plain number is seconds | tail sampling policy file (`decision_wait`) |
//! | [`parse_age`], [`parse_age_flag`] | whole `s`, `m`, `h`, `d`: `7d`; `0` = none | configuration (`COLLECTOR_RETENTION`, `COLLECTOR_TRACE_SETTLE`) |
//! | [`parse_unix_seconds`] | unix seconds, fractions allowed | native API (`start_time`, `end_time`) |
//! | [`parse_rfc3339_ns`] | RFC 3339 times with offsets | Jaeger `api_v3` (`query.start_time_min`) |
//!
//! Every parser answers unix nanoseconds (or nanoseconds of duration) and `None`/`Err` for
//! anything it does not accept: negative, NaN, unknown units, overflow.
//!
//! The other way, [`civil_from_days`] turns days since 1970-01-01 into a calendar date, for
//! the text summaries (`query/summary_text.rs`) and ClickHouse `Date` literals.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The current time, unix nanoseconds.
pub fn now_unix_nano() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Parses `250ms`, `1.5s`, `100us`, `100µs`, `20ns`, `2m`, `1h`; a plain number is
/// milliseconds. `None` for anything else (negative, NaN, unknown unit, overflow).
pub fn parse_duration_ns(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number.parse().ok()?;
    let scale = match unit.trim() {
        "" | "ms" => 1e6,
        "ns" => 1.0,
        "us" | "µs" | "μs" => 1e3,
        "s" => 1e9,
        "m" => 60e9,
        "h" => 3600e9,
        _ => return None,
    };
    let ns = value * scale;
    (ns.is_finite() && ns >= 0.0 && ns < u64::MAX as f64).then(|| ns.round() as u64)
}

/// Parses a Go duration (`300ms`, `1.5h`, `2h45m`, `1µs`): one or more number+unit pairs,
/// units `ns`, `us`, `µs`, `μs`, `ms`, `s`, `m`, `h`. `None` for anything else.
pub fn parse_go_duration_ns(text: &str) -> Option<u64> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    if rest == "0" {
        return Some(0);
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(split);
        let value: f64 = number.parse().ok()?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += value * scale;
        rest = next;
    }
    (total.is_finite() && total >= 0.0 && total < u64::MAX as f64).then(|| total.round() as u64)
}

/// Parses a retention age: a whole number with `s`, `m`, `h` or `d` (`72h`, `7d`); `0`
/// means no age limit (`Ok(None)`).
///
/// # Errors
/// A message for anything else.
pub fn parse_age(text: &str) -> Result<Option<Duration>, String> {
    let t = text.trim();
    if t == "0" {
        return Ok(None);
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| "expected a number with a unit, e.g. 72h or 7d".to_owned())?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err("the unit must be s, m, h or d (e.g. 7d)".to_owned()),
    };
    Ok((n > 0).then(|| Duration::from_secs(n.saturating_mul(seconds))))
}

/// [`parse_age`] for the command line: no limit is `Duration::ZERO`.
///
/// # Errors
/// As [`parse_age`].
pub fn parse_age_flag(text: &str) -> Result<Duration, String> {
    parse_age(text).map(Option::unwrap_or_default)
}

/// Unix seconds (fractions allowed) to unix nanoseconds; `None` for negative, NaN or
/// overflowing values.
pub fn parse_unix_seconds(text: &str) -> Option<u64> {
    let seconds: f64 = text.trim().parse().ok()?;
    let ns = seconds * 1e9;
    (ns.is_finite() && ns >= 0.0 && ns < u64::MAX as f64).then(|| ns.round() as u64)
}

/// Parses an RFC 3339 time (`2026-08-01T10:00:00Z`, fractions up to ns, `±hh:mm` offsets) to
/// unix nanoseconds. A space where the offset's `+` should be (an unescaped `+` in a query
/// string) is read as `+`.
pub fn parse_rfc3339_ns(text: &str) -> Option<u64> {
    let t = text.trim().replace(' ', "+");
    let b = t.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let s = t.get(range)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos: i64 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = t.get(start..i)?;
        if digits.is_empty() || digits.len() > 9 {
            return None;
        }
        nanos = format!("{digits:0<9}").parse().ok()?;
    }
    let offset_s: i64 = match t.get(i..)? {
        "Z" | "z" => 0,
        rest if rest.len() == 6 && matches!(&rest[..1], "+" | "-") && &rest[3..4] == ":" => {
            let h: i64 = rest.get(1..3)?.parse().ok()?;
            let m: i64 = rest.get(4..6)?.parse().ok()?;
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (h * 3600 + m * 60)
        }
        _ => return None,
    };
    // Days from civil (H. Hinnant).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    let ns = i128::from(seconds) * 1_000_000_000 + i128::from(nanos);
    u64::try_from(ns).ok()
}

/// The calendar date `(year, month 1-12, day 1-31)` of `days` since 1970-01-01 (proleptic
/// Gregorian calendar; negative `days` are before 1970). H. Hinnant's `civil_from_days`.
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Parses a duration as the OpenTelemetry Collector's files write them: `30s`, `500ms`, `1m`, `1h`, `250us`,
/// `100ns`, or a bare number of seconds.
///
/// # Errors
/// A message naming the value.
pub fn parse_collector_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 10s, 500ms, 1m)"))?;
    let seconds = match unit {
        "" | "s" => n,
        "ms" => n / 1e3,
        "us" | "µs" => n / 1e6,
        "ns" => n / 1e9,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(format!(
                "{text:?} has an unknown unit (ns, us, ms, s, m, h)"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration_ns("250ms"), Some(250_000_000));
        assert_eq!(parse_duration_ns("2s"), Some(2_000_000_000));
        assert_eq!(parse_duration_ns("1.5s"), Some(1_500_000_000));
        assert_eq!(parse_duration_ns("100us"), Some(100_000));
        assert_eq!(parse_duration_ns("100µs"), Some(100_000));
        assert_eq!(parse_duration_ns("7"), Some(7_000_000));
        assert_eq!(parse_duration_ns("1m"), Some(60_000_000_000));
        for bad in ["", "-1s", "abc", "1 parsec", "1e400s", "NaN"] {
            assert_eq!(parse_duration_ns(bad), None, "{bad}");
        }
    }

    #[test]
    fn collector_durations() {
        assert_eq!(parse_collector_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(
            parse_collector_duration("500ms"),
            Ok(Duration::from_millis(500))
        );
        assert_eq!(parse_collector_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_collector_duration("5"), Ok(Duration::from_secs(5)));
        assert!(parse_collector_duration("soon").is_err());
        assert!(parse_collector_duration("5 parsecs").is_err());
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration_ns("100ms"), Some(100_000_000));
        assert_eq!(parse_go_duration_ns("1.2s"), Some(1_200_000_000));
        assert_eq!(parse_go_duration_ns("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_go_duration_ns("2h45m"), Some(9_900_000_000_000));
        assert_eq!(parse_go_duration_ns("5µs"), Some(5_000));
        assert_eq!(parse_go_duration_ns("0"), Some(0));
        for bad in ["", "100", "1x", "-1s", "ms", "1e3s"] {
            assert_eq!(parse_go_duration_ns(bad), None, "{bad}");
        }
    }

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339_ns("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_ns("2025-11-21T04:40:00Z"),
            Some(1_763_700_000_000_000_000)
        );
        assert_eq!(
            parse_rfc3339_ns("2025-11-21T05:40:00.5+01:00"),
            Some(1_763_700_000_500_000_000)
        );
        // An unescaped '+' arrives as a space.
        assert_eq!(
            parse_rfc3339_ns("2025-11-21T05:40:00.000000001 01:00"),
            Some(1_763_700_000_000_000_001)
        );
        for bad in [
            "",
            "2025-11-21",
            "2025-13-01T00:00:00Z",
            "yesterday",
            "2025-11-21T04:40:00",
        ] {
            assert_eq!(parse_rfc3339_ns(bad), None, "{bad}");
        }
    }

    #[test]
    fn calendar_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_413), (2025, 11, 21));
        assert_eq!(civil_from_days(65_535), (2149, 6, 6));
        // The inverse of the parser's days-from-civil, over four centuries and more.
        for days in (-200_000..200_000).step_by(97) {
            let (y, m, d) = civil_from_days(days);
            let text = format!("{y:04}-{m:02}-{d:02}T00:00:00Z");
            if days >= 0 {
                assert_eq!(
                    parse_rfc3339_ns(&text),
                    Some(days as u64 * 86_400 * 1_000_000_000),
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn ages_parse() {
        assert_eq!(parse_age("7d"), Ok(Some(Duration::from_secs(7 * 86_400))));
        assert_eq!(parse_age("72h"), Ok(Some(Duration::from_secs(72 * 3600))));
        assert_eq!(parse_age("0"), Ok(None));
        assert!(parse_age("7").is_err());
        assert!(parse_age("1w").is_err());
        assert!(parse_age("-1d").is_err());
    }
}
