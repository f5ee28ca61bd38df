//! `GET /v1/traces?format=text` (or `Accept: text/plain`): trace summaries as a text list, one
//! trace per line, in the search's order:
//!
//! ```text
//! 3 traces
//! 4bf92f3577b34da6a3ce929d0e0e4736  2025-11-21 04:40:00.123Z   98.2 ms  10 spans  4 services  frontend POST /orders
//! 0af7651916cd43dd8448eb211c80319c  2025-11-21 04:39:58.001Z  412.3 ms  10 spans  4 services  frontend POST /orders  2 errors
//! ```
//!
//! Columns: trace id, start (UTC), duration, span count, service count, root service and
//! operation (`(root not arrived)` when the root span is missing), error spans when any.
//! Names are escaped so that one trace stays on one line.

use std::fmt::Write;

use crate::assemble::text::format_duration_ns;
use crate::store::TraceSummary;

/// Renders summaries as the text list described in the module docs.
pub fn render(summaries: &[TraceSummary]) -> String {
    let mut out = match summaries.len() {
        0 => "no traces match\n".to_owned(),
        1 => "1 trace\n".to_owned(),
        n => format!("{n} traces\n"),
    };
    for s in summaries {
        let root = match (&s.root_service, &s.root_operation) {
            (Some(service), Some(operation)) => {
                format!("{} {}", one_line(service), one_line(operation))
            }
            _ => "(root not arrived)".to_owned(),
        };
        let _ = write!(
            out,
            "{}  {}  {:>9}  {} span{}  {} service{}  {root}",
            s.trace_id,
            utc(s.start_time_unix_nano),
            format_duration_ns(s.duration_ns()),
            s.span_count,
            if s.span_count == 1 { "" } else { "s" },
            s.services.len(),
            if s.services.len() == 1 { "" } else { "s" },
        );
        if s.error_count > 0 {
            let _ = write!(
                out,
                "  {} error{}",
                s.error_count,
                if s.error_count == 1 { "" } else { "s" }
            );
        }
        out.push('\n');
    }
    out
}

/// Escapes control characters (newlines, ANSI escapes).
fn one_line(text: &str) -> String {
    text.chars()
        .flat_map(char::escape_debug)
        .collect::<String>()
}

/// `YYYY-MM-DD HH:MM:SS.mmmZ` for unix nanoseconds (proleptic Gregorian calendar, UTC).
fn utc(unix_nano: u64) -> String {
    let secs = unix_nano / 1_000_000_000;
    let millis = (unix_nano % 1_000_000_000) / 1_000_000;
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX);
    let rem = secs % 86_400;
    let (year, month, day) = crate::time::civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TraceId;

    #[test]
    fn dates_are_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00.000Z");
        assert_eq!(utc(1_763_700_000_123_000_000), "2025-11-21 04:40:00.123Z");
        assert_eq!(utc(951_782_400_000_000_000), "2000-02-29 00:00:00.000Z");
    }

    #[test]
    fn one_line_per_trace() {
        let mut s = TraceSummary::new(TraceId([0x4b; 16]));
        s.start_time_unix_nano = 1_763_700_000_000_000_000;
        s.end_time_unix_nano = s.start_time_unix_nano + 98_200_000;
        s.root_service = Some("frontend".into());
        s.root_operation = Some("POST /orders\nX".into());
        s.services = vec!["frontend".into(), "order".into()];
        s.span_count = 10;
        s.error_count = 2;
        let text = render(&[s.clone()]);
        assert_eq!(
            text,
            "1 trace\n4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b  2025-11-21 04:40:00.000Z    98.2 ms  \
             10 spans  2 services  frontend POST /orders\\nX  2 errors\n"
        );
        s.root_service = None;
        s.error_count = 0;
        assert!(render(&[s]).ends_with("2 services  (root not arrived)\n"));
        assert_eq!(render(&[]), "no traces match\n");
    }
}
