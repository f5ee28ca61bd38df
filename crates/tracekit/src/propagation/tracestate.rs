//! The `tracestate` header (W3C Trace Context Level 2 §3.3; interop.md §2.2, §2.6, §2.7;
//! reliability.md §4.1, §7.4 P5-P6).
//!
//! ```text
//! tracestate  = list-member 0*31( OWS "," OWS list-member )
//! list-member = key "=" value
//! key         = ( lcalpha / DIGIT ) 0*255( lcalpha / DIGIT / "_" / "-" / "*" / "/" / "@" )
//! value       = 0*255(chr) nblk-chr          ; chr = %x20-2B / %x2D-3C / %x3E-7E
//!                                            ; nblk-chr = chr without the space
//! ```
//!
//! Receiving rules implemented by [`TraceState::parse_lines`]:
//!
//! * repeated header lines are joined, in order, with `,` (RFC 9110 §5.3);
//! * if the combined value is longer than [`TraceState::MAX_INPUT_LEN`] bytes it is
//!   dropped without being scanned (bounded work for hostile input);
//! * spaces and tabs around members are trimmed, empty members are skipped;
//! * the key grammar is Level 2 (`@` anywhere after the first character, any number of
//!   times); the value keeps its leading spaces byte-exact;
//! * if **any** member is invalid, or there are more than 32 non-empty members, the
//!   **whole** tracestate is dropped (the interop.md §2.2 recommendation, and what the
//!   conformance suite at acab820 expects);
//! * of duplicate keys the first is kept;
//! * a valid state longer than [`TraceState::MAX_LEN`] characters (measured without OWS,
//!   commas included, as the specification measures it) is truncated by whole members:
//!   members longer than 128 characters first, right-most first, then from the right.

use std::fmt;
use std::sync::Arc;

use http::HeaderValue;

use super::lines::{CombinedLines, trim_ows};

/// An immutable, validated W3C `tracestate`: an ordered list of up to 32 `key=value`
/// members, stored as the normalised header value (members joined by `,`, no OWS).
///
/// Cloning is a reference-count increment; the empty state allocates nothing. The
/// formatted [`HeaderValue`] is built once, when the state is built, so injecting it
/// does not allocate.
///
/// # Examples
/// ```
/// use tracekit::propagation::TraceState;
/// let ts = TraceState::parse("rojo=00f067aa0ba902b7 , congo=t61rcWkgMzE,,");
/// assert_eq!(ts.as_str(), "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
/// assert_eq!(ts.get("congo"), Some("t61rcWkgMzE"));
///
/// // Our own entry goes to the left; the others keep their order.
/// let ts = ts.insert("spanline", "s1").unwrap();
/// assert_eq!(ts.as_str(), "spanline=s1,rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
///
/// // One bad member (uppercase key) and the whole state is dropped.
/// assert!(TraceState::parse("foo=1,BAR=2").is_empty());
/// ```
#[derive(Clone, Default)]
pub struct TraceState(Option<Arc<Inner>>);

struct Inner {
    /// The normalised value; never empty.
    text: String,
    /// `text` as a header value, built once.
    header: HeaderValue,
}

/// Why [`TraceState::insert`] refused a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TraceStateError {
    /// The key does not match the Level 2 key grammar (1-256 characters, first `a-z0-9`,
    /// then `a-z0-9_-*/@`).
    #[error("invalid tracestate key")]
    InvalidKey,
    /// The value is empty, longer than 256 characters, contains a character outside
    /// `0x20-0x7E`, a `,` or a `=`, or ends with a space.
    #[error("invalid tracestate value")]
    InvalidValue,
}

const fn is_key_start(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

const fn is_key_char(b: u8) -> bool {
    is_key_start(b) || matches!(b, b'_' | b'-' | b'*' | b'/' | b'@')
}

const fn is_value_char(b: u8) -> bool {
    matches!(b, 0x20..=0x7e) && b != b',' && b != b'='
}

fn valid_key(k: &[u8]) -> bool {
    match k.split_first() {
        Some((&first, rest)) => {
            k.len() <= TraceState::MAX_KEY_LEN
                && is_key_start(first)
                && rest.iter().all(|&b| is_key_char(b))
        }
        None => false,
    }
}

fn valid_value(v: &[u8]) -> bool {
    match v.last() {
        Some(&last) => {
            v.len() <= TraceState::MAX_VALUE_LEN
                && last != b' '
                && v.iter().all(|&b| is_value_char(b))
        }
        None => false,
    }
}

/// The length of the key of a valid (trimmed) member, or `None` if it is invalid.
fn validate_member(m: &[u8]) -> Option<usize> {
    let eq = m.iter().position(|&b| b == b'=')?;
    (valid_key(&m[..eq]) && valid_value(&m[eq + 1..])).then_some(eq)
}

/// The key of a member already known to be valid.
fn key_of(m: &[u8]) -> &[u8] {
    m.iter().position(|&b| b == b'=').map_or(m, |eq| &m[..eq])
}

/// Members larger than this are the first to go when truncating (W3C §3.3.1.5).
const LARGE_MEMBER: usize = 128;

impl TraceState {
    /// At most this many list members (W3C §3.3.1.1).
    pub const MAX_MEMBERS: usize = 32;
    /// Longest key.
    pub const MAX_KEY_LEN: usize = 256;
    /// Longest value.
    pub const MAX_VALUE_LEN: usize = 256;
    /// Longest normalised state propagated, in characters, commas included and OWS
    /// excluded: the W3C minimum ("SHOULD propagate at least 512 characters"). Longer
    /// states are truncated by whole members (reliability.md §7.4 P6).
    pub const MAX_LEN: usize = 512;
    /// Longest combined raw input (all lines joined with `,`) that is parsed at all.
    /// Longer input yields the empty state without being scanned.
    pub const MAX_INPUT_LEN: usize = 8192;

    /// Parses one `tracestate` header value. See [`TraceState::parse_lines`].
    pub fn parse(value: &str) -> TraceState {
        TraceState::parse_lines(std::iter::once(value.as_bytes()))
    }

    /// Parses all `tracestate` header lines of a request, in order (interop.md §2.7).
    ///
    /// Never fails: anything invalid gives the empty state (see the module docs for the
    /// exact rules). Work is bounded by [`TraceState::MAX_INPUT_LEN`]; when there is no
    /// line at all nothing is allocated.
    pub fn parse_lines<'a>(lines: impl Iterator<Item = &'a [u8]>) -> TraceState {
        let combined = match CombinedLines::collect(lines, Self::MAX_INPUT_LEN) {
            None | Some(CombinedLines::Empty) => return TraceState::default(),
            Some(combined) => combined,
        };
        let mut members: [&[u8]; Self::MAX_MEMBERS] = [&[]; Self::MAX_MEMBERS];
        let mut kept = 0;
        let mut seen = 0;
        for raw in combined.members() {
            let m = trim_ows(raw);
            if m.is_empty() {
                continue;
            }
            seen += 1;
            if seen > Self::MAX_MEMBERS {
                return TraceState::default();
            }
            let Some(key_len) = validate_member(m) else {
                return TraceState::default();
            };
            let key = &m[..key_len];
            if members[..kept].iter().any(|prev| key_of(prev) == key) {
                continue;
            }
            members[kept] = m;
            kept += 1;
        }
        TraceState::build(&members[..kept], false)
    }

    /// Joins valid members, truncating to [`TraceState::MAX_LEN`] by whole members. With
    /// `keep_first`, the left-most member is never removed.
    fn build(members: &[&[u8]], keep_first: bool) -> TraceState {
        if members.is_empty() {
            return TraceState::default();
        }
        let mut keep = [false; Self::MAX_MEMBERS];
        keep[..members.len()].fill(true);
        let mut count = members.len();
        let mut bytes: usize = members.iter().map(|m| m.len()).sum();
        // Normalised length: the members plus one comma between each two.
        let len = |bytes: usize, count: usize| bytes + count.saturating_sub(1);
        let first_removable = usize::from(keep_first);
        // Large members first, right-most first; then from the right.
        for only_large in [true, false] {
            for i in (first_removable..members.len()).rev() {
                if len(bytes, count) <= Self::MAX_LEN {
                    break;
                }
                if keep[i] && (!only_large || members[i].len() > LARGE_MEMBER) {
                    keep[i] = false;
                    count -= 1;
                    bytes -= members[i].len();
                }
            }
        }
        let mut text = Vec::with_capacity(len(bytes, count));
        for (m, _) in members.iter().zip(keep).filter(|(_, k)| *k) {
            if !text.is_empty() {
                text.push(b',');
            }
            text.extend_from_slice(m);
        }
        TraceState::from_normalised(text)
    }

    fn from_normalised(text: Vec<u8>) -> TraceState {
        if text.is_empty() {
            return TraceState::default();
        }
        // Validated members are printable ASCII, so both conversions succeed; if they
        // did not, dropping the state is the safe outcome.
        let Ok(text) = String::from_utf8(text) else {
            return TraceState::default();
        };
        let Ok(header) = HeaderValue::from_str(&text) else {
            return TraceState::default();
        };
        TraceState(Some(Arc::new(Inner { text, header })))
    }

    /// The normalised value (`""` when empty): members joined by `,`, without OWS.
    pub fn as_str(&self) -> &str {
        self.0.as_ref().map_or("", |i| i.text.as_str())
    }

    /// Whether there are no members.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// Number of members (0..=32).
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// The members, left to right, as `(key, value)`.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        let text = self.as_str();
        text.split(',')
            .filter(|m| !m.is_empty())
            .map(|m| m.split_once('=').unwrap_or((m, "")))
    }

    /// The value for `key`, byte-exact (leading spaces included).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// A new state with `key=value` as the left-most member (W3C §3.5: a vendor adds or
    /// updates its own entry at the left). An existing member with the same key is
    /// removed; if that makes more than 32 members the right-most is dropped, and if the
    /// result is longer than [`TraceState::MAX_LEN`] whole members are dropped as in
    /// parsing (never the new one).
    ///
    /// # Errors
    /// [`TraceStateError::InvalidKey`] or [`TraceStateError::InvalidValue`] if the member
    /// does not match the grammar; `self` is unchanged either way.
    pub fn insert(&self, key: &str, value: &str) -> Result<TraceState, TraceStateError> {
        if !valid_key(key.as_bytes()) {
            return Err(TraceStateError::InvalidKey);
        }
        if !valid_value(value.as_bytes()) {
            return Err(TraceStateError::InvalidValue);
        }
        let new = format!("{key}={value}");
        let mut members: [&[u8]; Self::MAX_MEMBERS] = [&[]; Self::MAX_MEMBERS];
        members[0] = new.as_bytes();
        let mut n = 1;
        let others = self.as_str().split(',').map(str::as_bytes);
        for m in others.filter(|m| !m.is_empty() && key_of(m) != key.as_bytes()) {
            if n == Self::MAX_MEMBERS {
                // Over 32 members: the right-most go (W3C §3.5).
                break;
            }
            members[n] = m;
            n += 1;
        }
        Ok(TraceState::build(&members[..n], true))
    }

    /// A new state without the member for `key` (W3C §3.5: delete only your own keys).
    #[must_use]
    pub fn remove(&self, key: &str) -> TraceState {
        if self.get(key).is_none() {
            return self.clone();
        }
        let mut text = Vec::with_capacity(self.as_str().len());
        for m in self.as_str().split(',') {
            if key_of(m.as_bytes()) != key.as_bytes() {
                if !text.is_empty() {
                    text.push(b',');
                }
                text.extend_from_slice(m.as_bytes());
            }
        }
        TraceState::from_normalised(text)
    }

    /// The `tracestate` header value, or `None` when empty (an empty header should not be
    /// sent). Cheap: a reference-count increment.
    pub fn header_value(&self) -> Option<HeaderValue> {
        self.0.as_ref().map(|i| i.header.clone())
    }
}

impl PartialEq for TraceState {
    fn eq(&self, other: &TraceState) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for TraceState {}

impl std::hash::Hash for TraceState {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Debug for TraceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TraceState").field(&self.as_str()).finish()
    }
}

impl fmt::Display for TraceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracestate_insert_goes_left_and_keeps_32() {
        let ts = TraceState::parse("a=1,b=2,c=3");
        assert_eq!(ts.insert("b", "x").unwrap().as_str(), "b=x,a=1,c=3");
        assert_eq!(ts.insert("z", "9").unwrap().as_str(), "z=9,a=1,b=2,c=3");
        assert_eq!(ts.as_str(), "a=1,b=2,c=3", "immutable");
        assert_eq!(ts.insert("A", "1"), Err(TraceStateError::InvalidKey));
        assert_eq!(ts.insert("@a", "1"), Err(TraceStateError::InvalidKey));
        assert_eq!(ts.insert("a", ""), Err(TraceStateError::InvalidValue));
        assert_eq!(ts.insert("a", "x "), Err(TraceStateError::InvalidValue));
        assert_eq!(ts.insert("a", "x,y"), Err(TraceStateError::InvalidValue));
        assert_eq!(ts.insert("a", " x").unwrap().get("a"), Some(" x"));
        assert_eq!(ts.remove("b").as_str(), "a=1,c=3");
        assert_eq!(ts.remove("nope"), ts);
        assert!(TraceState::parse("a=1").remove("a").is_empty());

        let full: Vec<String> = (0..32).map(|i| format!("k{i}=v")).collect();
        let ts = TraceState::parse(&full.join(","));
        assert_eq!(ts.len(), 32);
        let ts2 = ts.insert("ours", "1").unwrap();
        assert_eq!(ts2.len(), 32);
        assert_eq!(ts2.iter().next(), Some(("ours", "1")));
        assert_eq!(ts2.get("k31"), None, "right-most dropped");
        assert_eq!(ts2.get("k30"), Some("v"));
        // Updating an existing key does not drop anything.
        assert_eq!(ts.insert("k5", "w").unwrap().len(), 32);
    }

    #[test]
    fn tracestate_input_cap_bounds_work() {
        let padded = format!("foo=1{}", " ".repeat(TraceState::MAX_INPUT_LEN - 5));
        assert_eq!(TraceState::parse(&padded).as_str(), "foo=1");
        let over = format!("foo=1{}", " ".repeat(TraceState::MAX_INPUT_LEN - 4));
        assert!(TraceState::parse(&over).is_empty());
        // Many lines: the joining commas count.
        let lines: Vec<&[u8]> = vec![b"a=1"; 3000];
        assert!(TraceState::parse_lines(lines.into_iter()).is_empty());
    }

    #[test]
    fn tracestate_is_cheap_to_clone_and_compare() {
        let ts = TraceState::parse("a=1");
        let clone = ts.clone();
        assert_eq!(ts, clone);
        assert_eq!(format!("{ts:?}"), "TraceState(\"a=1\")");
        assert_eq!(ts.to_string(), "a=1");
        assert_eq!(TraceState::default(), TraceState::parse(" , "));
    }
}
