//! Query-string plumbing shared by every query API: the pairs of a query string, parsed
//! once, and typed readers of one value whose errors name the parameter
//! (`min_duration must be a duration such as 250ms`).

use axum::extract::Query;
use axum::extract::rejection::QueryRejection;

use axum::http::{HeaderMap, header};

use crate::error::Error;
use crate::model::{SpanKind, StatusCode as SpanStatus};
use crate::store::{SortOrder, TraceQuery};
use crate::time;

/// A query string as ordered `(key, value)` pairs (repeated keys kept), or why it is not one.
pub(crate) type Pairs = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// The pairs, or 400 `malformed query string`.
pub(crate) fn pairs(p: Pairs) -> Result<Vec<(String, String)>, Error> {
    p.map(|Query(v)| v)
        .map_err(|_| Error::BadRequest("malformed query string".into()))
}

/// One value under its key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Param<'a> {
    /// The parameter's name, as the caller wrote it.
    pub(crate) key: &'a str,
    /// Its value.
    pub(crate) value: &'a str,
}

impl<'a> Param<'a> {
    /// A value under its key.
    pub(crate) fn new(key: &'a str, value: &'a str) -> Self {
        Self { key, value }
    }

    /// 400 `<key> must be <what>`.
    pub(crate) fn bad(&self, what: &str) -> Error {
        Error::BadRequest(format!("{} must be {what}", self.key))
    }

    /// `true`/`1` or `false`/`0`/empty; anything else is 400.
    pub(crate) fn bool(&self) -> Result<bool, Error> {
        match self.value {
            "true" | "1" => Ok(true),
            "false" | "0" | "" => Ok(false),
            _ => Err(self.bad("true or false")),
        }
    }

    /// A duration ([`time::parse_duration_ns`]); `example` completes the message.
    pub(crate) fn duration_ns(&self, example: &str) -> Result<u64, Error> {
        time::parse_duration_ns(self.value)
            .ok_or_else(|| self.bad(&format!("a duration such as {example}")))
    }

    /// A Go duration ([`time::parse_go_duration_ns`]).
    pub(crate) fn go_duration_ns(&self, example: &str) -> Result<u64, Error> {
        time::parse_go_duration_ns(self.value)
            .ok_or_else(|| self.bad(&format!("a duration such as {example}")))
    }

    /// Unix seconds ([`time::parse_unix_seconds`]), as unix nanoseconds.
    pub(crate) fn unix_seconds(&self) -> Result<u64, Error> {
        time::parse_unix_seconds(self.value).ok_or_else(|| self.bad("unix seconds"))
    }

    /// An RFC 3339 time ([`time::parse_rfc3339_ns`]), as unix nanoseconds.
    pub(crate) fn rfc3339_ns(&self) -> Result<u64, Error> {
        time::parse_rfc3339_ns(self.value).ok_or_else(|| self.bad("an RFC 3339 time"))
    }

    /// A non-negative integer; `what` names it in the message.
    pub(crate) fn u64(&self, what: &str) -> Result<u64, Error> {
        self.value.trim().parse().map_err(|_| self.bad(what))
    }
}

/// Most `attr.KEY=VALUE` filters in one search.
pub(crate) const MAX_ATTRIBUTE_FILTERS: usize = 16;

/// The search filters of `GET /v1/traces` (see the module docs); 400 for a bad value.
pub(crate) fn parse_search(params: Vec<(String, String)>) -> Result<TraceQuery, Error> {
    let mut q = TraceQuery::default();
    let mut sort = None;
    for (key, value) in params {
        if let Some(attr) = key.strip_prefix("attr.") {
            if attr.is_empty() {
                return Err(Error::BadRequest(
                    "attr. needs a key: attr.KEY=VALUE".into(),
                ));
            }
            if q.attributes.len() >= MAX_ATTRIBUTE_FILTERS {
                return Err(Error::BadRequest(format!(
                    "at most {MAX_ATTRIBUTE_FILTERS} attribute filters"
                )));
            }
            q.attributes.push((attr.to_owned(), value));
            continue;
        }
        let p = Param::new(&key, &value);
        let bad = |what: &str| p.bad(what);
        match key.as_str() {
            "service" if !value.is_empty() => q.service = Some(value.clone()),
            "operation" if !value.is_empty() => q.operation = Some(value.clone()),
            "min_duration" => q.min_duration_ns = Some(p.duration_ns("250ms")?),
            "max_duration" => q.max_duration_ns = Some(p.duration_ns("2s")?),
            "start_time" => q.start_time_min_unix_nano = Some(p.unix_seconds()?),
            "end_time" => q.start_time_max_unix_nano = Some(p.unix_seconds()?),
            "error" => q.errors_only = p.bool()?,
            "kind" if !value.is_empty() => {
                q.kind = Some(
                    SpanKind::parse(&value)
                        .ok_or_else(|| bad("server, client, internal, producer or consumer"))?,
                );
            }
            "status" if !value.is_empty() => {
                q.status =
                    Some(SpanStatus::parse(&value).ok_or_else(|| bad("ok, error or unset"))?);
            }
            "sort" if !value.is_empty() => {
                sort = Some(match value.as_str() {
                    "newest" => SortOrder::Newest,
                    "duration" => SortOrder::Duration,
                    _ => return Err(bad("newest or duration")),
                });
            }
            "limit" => {
                q.limit = value
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| bad("a positive integer"))?
                    .min(crate::store::MAX_SEARCH_LIMIT as u64) as usize;
            }
            _ => {}
        }
    }
    if let (Some(min), Some(max)) = (q.min_duration_ns, q.max_duration_ns)
        && min > max
    {
        return Err(Error::BadRequest(
            "min_duration is larger than max_duration".into(),
        ));
    }
    q.sort = sort.unwrap_or(if q.min_duration_ns.is_some() || q.errors_only {
        SortOrder::Duration
    } else {
        SortOrder::Newest
    });
    if let (Some(start), Some(end)) = (q.start_time_min_unix_nano, q.start_time_max_unix_nano)
        && start > end
    {
        return Err(Error::BadRequest("start_time is after end_time".into()));
    }
    Ok(q)
}

/// `http://<Host>`: where the caller reached this port, so where the web UI is.
pub(crate) fn ui_base_url(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let valid = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b));
    valid.then(|| format!("http://{host}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_params() {
        let p = |pairs: &[(&str, &str)]| {
            parse_search(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        let q = p(&[("service", "a"), ("limit", "5000"), ("error", "true")]).unwrap();
        assert_eq!(q.service.as_deref(), Some("a"));
        assert_eq!(q.limit, 1000);
        assert!(q.errors_only);
        assert!(p(&[("limit", "0")]).is_err());
        assert!(p(&[("min_duration", "2s"), ("max_duration", "1s")]).is_err());
        assert!(p(&[("start_time", "20"), ("end_time", "10")]).is_err());
        assert!(p(&[("error", "maybe")]).is_err());
        assert!(p(&[("whatever", "x")]).is_ok());
        let q = p(&[
            ("kind", "server"),
            ("status", "ERROR"),
            ("attr.http.route", "/orders"),
            ("attr.app.id", "7"),
        ])
        .unwrap();
        assert_eq!(q.kind, Some(SpanKind::Server));
        assert_eq!(q.status, Some(SpanStatus::Error));
        assert_eq!(q.attributes.len(), 2);
        assert_eq!(q.sort, SortOrder::Newest);
        assert_eq!(p(&[("error", "true")]).unwrap().sort, SortOrder::Duration);
        assert_eq!(
            p(&[("min_duration", "1s")]).unwrap().sort,
            SortOrder::Duration
        );
        let q = p(&[("min_duration", "1s"), ("sort", "newest")]).unwrap();
        assert_eq!(q.sort, SortOrder::Newest);
        assert!(p(&[("kind", "sideways")]).is_err());
        assert!(p(&[("sort", "random")]).is_err());
        assert!(p(&[("attr.", "x")]).is_err());
    }
}
