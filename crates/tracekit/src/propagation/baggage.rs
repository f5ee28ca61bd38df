//! The `baggage` header (W3C Baggage, HTTP header format; interop.md §2.4; reliability.md
//! §4.2, §4.4 and §7.4 P7-P8).
//!
//! ```text
//! baggage-string = list-member 0*179( OWS "," OWS list-member )
//! list-member    = key OWS "=" OWS value *( OWS ";" OWS property )
//! property       = key OWS "=" OWS value / key OWS
//! key            = token                          ; RFC 7230 §3.2.6
//! value          = *baggage-octet                 ; everything else percent-encoded (UTF-8)
//! baggage-octet  = %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E
//! ```
//!
//! Receiving rules implemented by [`Baggage::parse_lines`]:
//!
//! * repeated header lines are combined with `,` and the **combined** length is checked
//!   **first**: over [`Baggage::MAX_LEN`] (8192) bytes, all of it is dropped before any
//!   member is parsed (CVE-2026-29181);
//! * OWS around members, `=` and `;` is trimmed; empty members are skipped;
//! * an invalid member (key not a token, no `=`, a value or property byte outside the
//!   grammar) is dropped and the others are kept;
//! * values are percent-decoded; a `%` not followed by two hex digits, and any invalid
//!   UTF-8 sequence, become U+FFFD;
//! * after [`Baggage::MAX_MEMBERS`] (64) valid members the rest is ignored: the first 64
//!   whole members are kept (never a part of one);
//! * repeated keys are all kept, in order (the W3C format allows them);
//!   [`Baggage::get`] returns the first.
//!
//! Sending ([`Baggage::header_value`]) percent-encodes every value byte outside
//! `baggage-octet`, and `%` itself, and drops whole members from the end to stay within
//! 64 members and 8192 bytes.

use std::fmt;
use std::sync::{Arc, OnceLock};

use http::HeaderValue;

use super::lines::{CombinedLines, trim_ows};

/// One baggage entry: a key, its decoded value and optional properties.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BaggageMember {
    key: String,
    value: String,
    properties: Option<String>,
}

impl BaggageMember {
    /// The key (an RFC 7230 token).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The percent-decoded value (may be empty).
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The properties after the value, normalised: `;`-separated `name` or `name=value`
    /// items without OWS, values as received (still percent-encoded); e.g. `prop1;k=v`.
    /// `None` when the member had none.
    pub fn properties(&self) -> Option<&str> {
        self.properties.as_deref()
    }
}

/// An immutable, ordered list of baggage members (W3C Baggage).
///
/// Cloning is a reference-count increment; the empty baggage allocates nothing. The
/// formatted header is computed on first use and cached.
///
/// # Examples
/// ```
/// use tracekit::propagation::Baggage;
/// let b = Baggage::parse("userId=alice, serverNode=DF%2028 ,isProduction=false;prop");
/// assert_eq!(b.get("serverNode"), Some("DF 28"));
/// assert_eq!(b.iter().nth(2).unwrap().properties(), Some("prop"));
///
/// let b = b.insert("userId", "bob smith").unwrap();
/// assert_eq!(
///     b.header_value().unwrap(),
///     "userId=bob%20smith,serverNode=DF%2028,isProduction=false;prop"
/// );
/// ```
#[derive(Clone, Default)]
pub struct Baggage(Option<Arc<Inner>>);

struct Inner {
    /// Never empty.
    members: Vec<BaggageMember>,
    header: OnceLock<Option<HeaderValue>>,
}

/// Why [`Baggage::insert`] refused a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BaggageError {
    /// The key is not an RFC 7230 token (empty, or a character outside
    /// `` !#$%&'*+-.^_`|~ ``, digits and letters).
    #[error("baggage key is not an RFC 7230 token")]
    InvalidKey,
}

/// RFC 7230 `tchar`.
const fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// W3C Baggage `baggage-octet`.
const fn is_baggage_octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e)
}

/// Hex digit value, either case.
const fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const REPLACEMENT: &str = "\u{FFFD}";

/// Percent-decodes a value made of baggage-octets. A `%` without two hex digits after it
/// becomes U+FFFD (and the following bytes are read as they are); invalid UTF-8 in the
/// decoded bytes becomes U+FFFD per maximal invalid subsequence.
pub(crate) fn percent_decode(v: &[u8]) -> String {
    if !v.contains(&b'%') {
        // Baggage-octets are ASCII.
        return String::from_utf8_lossy(v).into_owned();
    }
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        let b = v[i];
        if b == b'%' {
            let hi = v.get(i + 1).copied().and_then(hex_value);
            let lo = v.get(i + 2).copied().and_then(hex_value);
            if let (Some(hi), Some(lo)) = (hi, lo) {
                out.push((hi << 4) | lo);
                i += 3;
            } else {
                out.extend_from_slice(REPLACEMENT.as_bytes());
                i += 1;
            }
        } else {
            out.push(b);
            i += 1;
        }
    }
    match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Appends `value` percent-encoded: baggage-octets other than `%` as they are, every
/// other byte of the UTF-8 form as `%XX`.
fn percent_encode_into(value: &str, out: &mut Vec<u8>) {
    for &b in value.as_bytes() {
        if is_baggage_octet(b) && b != b'%' {
            out.push(b);
        } else {
            out.extend_from_slice(&[
                b'%',
                HEX_UPPER[usize::from(b >> 4)],
                HEX_UPPER[usize::from(b & 0x0f)],
            ]);
        }
    }
}

/// Validates and normalises the properties after the first `;` of a member. `Ok(None)`
/// when there are none (only empty items), `Err(())` when one is invalid.
fn parse_properties(p: &[u8]) -> Result<Option<String>, ()> {
    let mut out = String::new();
    for item in p.split(|&b| b == b';').map(trim_ows) {
        if item.is_empty() {
            continue;
        }
        let (name, value) = match item.iter().position(|&b| b == b'=') {
            Some(eq) => (trim_ows(&item[..eq]), Some(trim_ows(&item[eq + 1..]))),
            None => (item, None),
        };
        if !is_token(name) || !value.is_none_or(|v| v.iter().all(|&b| is_baggage_octet(b))) {
            return Err(());
        }
        if !out.is_empty() {
            out.push(';');
        }
        // Tokens and baggage-octets are ASCII.
        out.push_str(&String::from_utf8_lossy(name));
        if let Some(v) = value {
            out.push('=');
            out.push_str(&String::from_utf8_lossy(v));
        }
    }
    Ok((!out.is_empty()).then_some(out))
}

/// Parses one trimmed, non-empty list member; `None` if it is invalid.
fn parse_member(m: &[u8]) -> Option<BaggageMember> {
    let (kv, props) = match m.iter().position(|&b| b == b';') {
        Some(semi) => (&m[..semi], Some(&m[semi + 1..])),
        None => (m, None),
    };
    let eq = kv.iter().position(|&b| b == b'=')?;
    let key = trim_ows(&kv[..eq]);
    let value = trim_ows(&kv[eq + 1..]);
    if !is_token(key) || !value.iter().all(|&b| is_baggage_octet(b)) {
        return None;
    }
    let properties = match props {
        Some(p) => parse_properties(p).ok()?,
        None => None,
    };
    Some(BaggageMember {
        key: String::from_utf8_lossy(key).into_owned(),
        value: percent_decode(value),
        properties,
    })
}

impl Baggage {
    /// At most this many members are read from, and written to, a header (the W3C minimum
    /// every platform must propagate).
    pub const MAX_MEMBERS: usize = 64;
    /// Longest combined header, in bytes, that is parsed or written (the W3C minimum).
    pub const MAX_LEN: usize = 8192;

    /// Parses one `baggage` header value. See [`Baggage::parse_lines`].
    pub fn parse(value: &str) -> Baggage {
        Baggage::parse_lines(std::iter::once(value.as_bytes()))
    }

    /// Parses all `baggage` header lines of a request, in order, as one combined list.
    ///
    /// Never fails; see the module docs for what is dropped. The combined length is
    /// checked before anything is parsed, so the work is bounded by
    /// [`Baggage::MAX_LEN`] bytes whatever the number of lines.
    pub fn parse_lines<'a>(lines: impl Iterator<Item = &'a [u8]>) -> Baggage {
        let combined = match CombinedLines::collect(lines, Self::MAX_LEN) {
            None | Some(CombinedLines::Empty) => return Baggage::default(),
            Some(combined) => combined,
        };
        let mut members = Vec::new();
        for raw in combined.members() {
            if members.len() == Self::MAX_MEMBERS {
                break;
            }
            let m = trim_ows(raw);
            if m.is_empty() {
                continue;
            }
            if let Some(member) = parse_member(m) {
                members.push(member);
            }
        }
        Baggage::from_members(members)
    }

    fn from_members(members: Vec<BaggageMember>) -> Baggage {
        if members.is_empty() {
            Baggage::default()
        } else {
            Baggage(Some(Arc::new(Inner {
                members,
                header: OnceLock::new(),
            })))
        }
    }

    fn members(&self) -> &[BaggageMember] {
        self.0.as_ref().map_or(&[], |i| i.members.as_slice())
    }

    /// The decoded value of the first member with this key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.members()
            .iter()
            .find(|m| m.key == key)
            .map(|m| m.value.as_str())
    }

    /// A new baggage with `key` set to `value` (any text; it is percent-encoded on the
    /// wire). An existing member with this key is replaced in place (its properties are
    /// dropped, and any later duplicates of the key removed); otherwise the member is
    /// appended.
    ///
    /// # Errors
    /// [`BaggageError::InvalidKey`] if `key` is not an RFC 7230 token.
    pub fn insert(&self, key: &str, value: &str) -> Result<Baggage, BaggageError> {
        if !is_token(key.as_bytes()) {
            return Err(BaggageError::InvalidKey);
        }
        let new = BaggageMember {
            key: key.to_owned(),
            value: value.to_owned(),
            properties: None,
        };
        let mut members = Vec::with_capacity(self.len() + 1);
        let mut new = Some(new);
        for m in self.members() {
            if m.key != key {
                members.push(m.clone());
            } else if let Some(n) = new.take() {
                members.push(n);
            }
        }
        members.extend(new);
        Ok(Baggage::from_members(members))
    }

    /// A new baggage without any member with this key.
    #[must_use]
    pub fn remove(&self, key: &str) -> Baggage {
        if self.get(key).is_none() {
            return self.clone();
        }
        let members = self.members().iter().filter(|m| m.key != key).cloned();
        Baggage::from_members(members.collect())
    }

    /// The members, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, BaggageMember> {
        self.members().iter()
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members().len()
    }

    /// Whether there are no members.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The `baggage` header value, or `None` when there is nothing to send.
    ///
    /// Members are written in order as `key=percent-encoded-value[;properties]`, joined by
    /// `,`. Writing stops before the first member that would make more than 64 members
    /// or more than 8192 bytes, so only whole members are ever sent. Computed once per
    /// baggage and cached.
    pub fn header_value(&self) -> Option<HeaderValue> {
        let inner = self.0.as_ref()?;
        inner
            .header
            .get_or_init(|| Self::format(&inner.members))
            .clone()
    }

    fn format(members: &[BaggageMember]) -> Option<HeaderValue> {
        let mut out = Vec::new();
        for m in members.iter().take(Self::MAX_MEMBERS) {
            let before = out.len();
            if before > 0 {
                out.push(b',');
            }
            out.extend_from_slice(m.key.as_bytes());
            out.push(b'=');
            percent_encode_into(&m.value, &mut out);
            if let Some(p) = &m.properties {
                out.push(b';');
                out.extend_from_slice(p.as_bytes());
            }
            if out.len() > Self::MAX_LEN {
                out.truncate(before);
                break;
            }
        }
        if out.is_empty() {
            return None;
        }
        HeaderValue::from_maybe_shared(bytes::Bytes::from(out)).ok()
    }
}

impl PartialEq for Baggage {
    fn eq(&self, other: &Baggage) -> bool {
        self.members() == other.members()
    }
}

impl Eq for Baggage {}

impl fmt::Debug for Baggage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.members()).finish()
    }
}

impl<'a> IntoIterator for &'a Baggage {
    type Item = &'a BaggageMember;
    type IntoIter = std::slice::Iter<'a, BaggageMember>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baggage_w3c_example_and_ows() {
        let b = Baggage::parse("userId=alice,serverNode=DF%2028,isProduction=false;prop");
        let got: Vec<(&str, &str, Option<&str>)> = b
            .iter()
            .map(|m| (m.key(), m.value(), m.properties()))
            .collect();
        assert_eq!(
            got,
            [
                ("userId", "alice", None),
                ("serverNode", "DF 28", None),
                ("isProduction", "false", Some("prop")),
            ]
        );
        let b = Baggage::parse(" \tk1 = v1 \t; p1 ; p2 = x=y ,k2=v=2, ,,");
        let got: Vec<(&str, &str, Option<&str>)> = b
            .iter()
            .map(|m| (m.key(), m.value(), m.properties()))
            .collect();
        assert_eq!(got, [("k1", "v1", Some("p1;p2=x=y")), ("k2", "v=2", None)]);
        assert_eq!(b.header_value().unwrap(), "k1=v1;p1;p2=x=y,k2=v=2");
    }

    #[rustfmt::skip]
    #[test]
    fn baggage_invalid_members_are_dropped_alone() {
        let cases = [
            "bad key=1",      // space in key
            "(k)=1",          // separators are not token characters
            "k\u{e9}=1",      // non-ASCII key
            "=1",             // empty key
            "novalue",        // no '='
            "k=a b",          // space inside the value
            "k=a\"b",         // DQUOTE
            "k=a\\b",         // backslash
            "k=\u{e9}",       // raw non-ASCII value
            "k=v;bad prop",   // invalid property
            "k=v;p=a b",      // invalid property value
        ];
        for bad in cases {
            let b = Baggage::parse(&format!("a=1,{bad},z=2"));
            let keys: Vec<&str> = b.iter().map(BaggageMember::key).collect();
            assert_eq!(keys, ["a", "z"], "{bad:?}");
        }
        // Empty values are allowed by the grammar.
        assert_eq!(Baggage::parse("k=").get("k"), Some(""));
    }

    #[test]
    fn baggage_percent_encoding_round_trips() {
        let tricky = "a b,c;d=e%f\"g\\h\u{e9}\u{1F600}\u{0}\u{7f}~!#";
        let b = Baggage::default().insert("k", tricky).unwrap();
        let v = b.header_value().unwrap();
        let text = v.to_str().unwrap();
        assert_eq!(
            text,
            "k=a%20b%2Cc%3Bd=e%25f%22g%5Ch%C3%A9%F0%9F%98%80%00%7F~!#"
        );
        assert_eq!(Baggage::parse(text), b);
    }

    #[test]
    fn baggage_insert_replaces_in_place_or_appends() {
        let b = Baggage::parse("a=1;p,b=2,a=3,c=4");
        let b2 = b.insert("a", "x").unwrap();
        let got: Vec<(&str, &str, Option<&str>)> = b2
            .iter()
            .map(|m| (m.key(), m.value(), m.properties()))
            .collect();
        assert_eq!(got, [("a", "x", None), ("b", "2", None), ("c", "4", None)]);
        let b3 = b2.insert("d", "5").unwrap();
        assert_eq!(b3.header_value().unwrap(), "a=x,b=2,c=4,d=5");
        assert_eq!(b2.len(), 3, "insert leaves the original alone");
        assert_eq!(b.insert("a b", "1"), Err(BaggageError::InvalidKey));
        assert_eq!(b.insert("", "1"), Err(BaggageError::InvalidKey));
        assert_eq!(b3.remove("b").header_value().unwrap(), "a=x,c=4,d=5");
        assert!(Baggage::parse("a=1").remove("a").is_empty());
    }

    #[test]
    fn baggage_header_respects_64_members_and_8192_bytes() {
        let mut b = Baggage::default();
        for i in 0..70 {
            b = b.insert(&format!("k{i}"), "v").unwrap();
        }
        assert_eq!(b.len(), 70);
        let v = b.header_value().unwrap();
        let sent = Baggage::parse(v.to_str().unwrap());
        assert_eq!(sent.len(), 64);
        assert_eq!(sent.iter().last().unwrap().key(), "k63");

        // Each member is 3 + 1000 bytes (+1 comma): 8 fit (8031 bytes), the 9th would not.
        let mut b = Baggage::default();
        for i in 0..10 {
            b = b.insert(&format!("k{i}"), &"v".repeat(1000)).unwrap();
        }
        let v = b.header_value().unwrap();
        assert!(v.len() <= Baggage::MAX_LEN);
        assert_eq!(v.len(), 8 * 1003 + 7);
        // Percent-encoding counts: a value that encodes past the limit is dropped whole.
        let b = Baggage::default()
            .insert("a", "1")
            .unwrap()
            .insert("big", &" ".repeat(3000))
            .unwrap()
            .insert("z", "2")
            .unwrap();
        assert_eq!(b.header_value().unwrap(), "a=1");
    }
}
