//! The `traceparent` header (W3C Trace Context Level 2 §3.2; interop.md §2.1 and §2.7).
//!
//! ```text
//! traceparent = version "-" trace-id "-" parent-id "-" trace-flags
//!               2HEXDIGLC   32HEXDIGLC   16HEXDIGLC    2HEXDIGLC      (55 characters)
//! ```
//!
//! Parsing is strict: lowercase hex only, exact field lengths, non-zero ids, version `ff`
//! forbidden, version `00` exactly 55 characters. A higher (future) version is accepted
//! when it is at least 55 characters long and its first 55 characters parse as version
//! `00` followed by end of value or `-`; the rest is ignored. Leading and trailing spaces
//! and tabs (OWS) are trimmed. A value longer than [`MAX_TRACEPARENT_LEN`] bytes is
//! rejected before any byte is scanned (reliability.md §7.4 P4).
//!
//! Output is always version `00` with only the flags this library understands (`0x01`
//! sampled, `0x02` random); every other flag bit is zeroed.
//!
//! Nothing on this path allocates except the [`HeaderValue`] that formatting returns.

use http::HeaderValue;

use crate::id::{IdError, ONES, SpanId, TraceFlags, TraceId, hex8};
use crate::propagation::TraceState;
use crate::span_context::SpanContext;

/// Length of a version-`00` `traceparent` value.
pub const TRACEPARENT_LEN: usize = 55;

/// Longest raw `traceparent` value (before OWS trimming) that is looked at. Longer values
/// are rejected without scanning; a future version has no reason to be this large.
pub const MAX_TRACEPARENT_LEN: usize = 512;

/// Why a `traceparent` value was rejected: what [`parse_traceparent`] can return. Every
/// variant means "restart the trace".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TraceparentError {
    /// The raw value is longer than [`MAX_TRACEPARENT_LEN`] bytes; it was not scanned.
    #[error("traceparent is {len} bytes, over the {MAX_TRACEPARENT_LEN}-byte limit")]
    TooLong {
        /// Raw length in bytes.
        len: usize,
    },
    /// After OWS trimming the value is shorter than 55 characters.
    #[error("traceparent is {len} characters, at least 55 are required")]
    TooShort {
        /// Trimmed length in bytes.
        len: usize,
    },
    /// The version is not two lowercase hex digits.
    #[error("traceparent version is not 2 lowercase hex digits")]
    InvalidVersion,
    /// The version is `ff`, which the specification forbids.
    #[error("traceparent version ff is invalid")]
    ForbiddenVersion,
    /// Version `00` with anything after the flags (the value must be exactly 55 characters).
    #[error("version 00 traceparent is {len} characters, exactly 55 are required")]
    TrailingData {
        /// Trimmed length in bytes.
        len: usize,
    },
    /// A `-` was expected at this byte offset of the trimmed value (2, 35, 52, or 55 for a
    /// future version with more data after the flags). Catches fields of the wrong length.
    #[error("traceparent: expected '-' at offset {position}")]
    MissingDelimiter {
        /// Byte offset in the trimmed value.
        position: usize,
    },
    /// The trace-id is not 32 lowercase hex digits, or is all zeros.
    #[error("traceparent trace-id: {0}")]
    TraceId(IdError),
    /// The parent-id is not 16 lowercase hex digits, or is all zeros.
    #[error("traceparent parent-id: {0}")]
    ParentId(IdError),
    /// The trace-flags are not 2 lowercase hex digits.
    #[error("traceparent trace-flags are not 2 lowercase hex digits")]
    InvalidFlags,
}

/// A successfully parsed `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedTraceparent {
    /// The version that was received (`0x00`, or a future version below `0xff`). Output is
    /// always version `00` regardless.
    pub version: u8,
    /// The trace id (never all zeros).
    pub trace_id: TraceId,
    /// The caller's span id, the W3C `parent-id` (never all zeros).
    pub parent_id: SpanId,
    /// The flags, with only the known bits kept (`0x01` sampled, `0x02` random).
    pub trace_flags: TraceFlags,
}

impl ParsedTraceparent {
    /// The remote [`SpanContext`] this header describes, carrying `trace_state`.
    pub fn into_remote_context(self, trace_state: TraceState) -> SpanContext {
        SpanContext {
            trace_id: self.trace_id,
            span_id: self.parent_id,
            trace_flags: self.trace_flags,
            trace_state,
            is_remote: true,
        }
    }
}

/// Decodes two lowercase hex digits.
#[inline(always)]
fn decode_hex2(hi: u8, lo: u8) -> Option<u8> {
    const fn value(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    match (value(hi), value(lo)) {
        (Some(h), Some(l)) => Some((h << 4) | l),
        _ => None,
    }
}

/// The 8 bytes at `at..at + 8` of the fixed-size head.
#[inline(always)]
fn chunk(head: &[u8; TRACEPARENT_LEN], at: usize) -> [u8; 8] {
    let mut c = [0u8; 8];
    c.copy_from_slice(&head[at..at + 8]);
    c
}

/// Parses a `traceparent` header value (interop.md §2.7).
///
/// # Errors
/// A [`TraceparentError`] naming the first rule the value breaks. Any error means the
/// caller must restart the trace and must not parse `tracestate`.
///
/// # Examples
/// ```
/// use tracekit::propagation::parse_traceparent;
/// let p = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
/// assert_eq!(p.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert!(p.trace_flags.is_sampled());
/// // Future versions: the first 55 characters are read as version 00, the rest ignored.
/// assert!(parse_traceparent("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz").is_ok());
/// // Uppercase, wrong lengths and trailing data on version 00 are all rejected.
/// assert!(parse_traceparent("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01").is_err());
/// assert!(parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-").is_err());
/// ```
#[inline]
pub fn parse_traceparent(value: &str) -> Result<ParsedTraceparent, TraceparentError> {
    parse_traceparent_bytes(value.as_bytes())
}

/// [`parse_traceparent`] on raw header bytes (as [`HeaderValue::as_bytes`] gives them).
///
/// # Errors
/// As [`parse_traceparent`]; non-ASCII bytes are simply not hex.
#[inline]
pub fn parse_traceparent_bytes(value: &[u8]) -> Result<ParsedTraceparent, TraceparentError> {
    if value.len() > MAX_TRACEPARENT_LEN {
        return Err(TraceparentError::TooLong { len: value.len() });
    }
    let v = super::lines::trim_ows(value);
    if v.len() < TRACEPARENT_LEN {
        return Err(TraceparentError::TooShort { len: v.len() });
    }
    let Ok(head) = <&[u8; TRACEPARENT_LEN]>::try_from(&v[..TRACEPARENT_LEN]) else {
        return Err(TraceparentError::TooShort { len: v.len() });
    };
    if head[2] != b'-' {
        return Err(TraceparentError::MissingDelimiter { position: 2 });
    }
    let version = match decode_hex2(head[0], head[1]) {
        Some(0xff) => return Err(TraceparentError::ForbiddenVersion),
        Some(x) => x,
        None => return Err(TraceparentError::InvalidVersion),
    };
    if version == 0 {
        if v.len() != TRACEPARENT_LEN {
            return Err(TraceparentError::TrailingData { len: v.len() });
        }
    } else if v.len() > TRACEPARENT_LEN && v[TRACEPARENT_LEN] != b'-' {
        return Err(TraceparentError::MissingDelimiter {
            position: TRACEPARENT_LEN,
        });
    }
    if head[35] != b'-' {
        return Err(TraceparentError::MissingDelimiter { position: 35 });
    }
    if head[52] != b'-' {
        return Err(TraceparentError::MissingDelimiter { position: 52 });
    }
    let (a, ea) = hex8(chunk(head, 3));
    let (b, eb) = hex8(chunk(head, 11));
    let (c, ec) = hex8(chunk(head, 19));
    let (d, ed) = hex8(chunk(head, 27));
    if ea | eb | ec | ed != 0 {
        return Err(TraceparentError::TraceId(IdError::NotLowerHex));
    }
    let trace_id =
        (u128::from(a) << 96) | (u128::from(b) << 64) | (u128::from(c) << 32) | u128::from(d);
    if trace_id == 0 {
        return Err(TraceparentError::TraceId(IdError::AllZero));
    }
    let (hi, ehi) = hex8(chunk(head, 36));
    let (lo, elo) = hex8(chunk(head, 44));
    if ehi | elo != 0 {
        return Err(TraceparentError::ParentId(IdError::NotLowerHex));
    }
    let parent_id = (u64::from(hi) << 32) | u64::from(lo);
    if parent_id == 0 {
        return Err(TraceparentError::ParentId(IdError::AllZero));
    }
    let Some(flags) = decode_hex2(head[53], head[54]) else {
        return Err(TraceparentError::InvalidFlags);
    };
    Ok(ParsedTraceparent {
        version,
        trace_id: TraceId::from_u128(trace_id),
        parent_id: SpanId::from_u64(parent_id),
        trace_flags: TraceFlags::from_u8(flags).known(),
    })
}

/// Encodes `v` as 8 lowercase hex digits, most significant first (SWAR, no table).
#[inline(always)]
fn encode_hex8(v: u32) -> [u8; 8] {
    // Spread the 8 nibbles into the 8 bytes of a u64, most significant in the top byte.
    let mut x = u64::from(v);
    x = (x | (x << 16)) & 0x0000_ffff_0000_ffff;
    x = (x | (x << 8)) & 0x00ff_00ff_00ff_00ff;
    x = (x | (x << 4)) & 0x0f0f_0f0f_0f0f_0f0f;
    // 1 in each byte whose nibble is 10 or more.
    let alpha = ((x + ONES * 6) >> 4) & ONES;
    (x + ONES * u64::from(b'0') + alpha * u64::from(b'a' - b'0' - 10)).to_be_bytes()
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// The 55 bytes of a version-`00` `traceparent` for these fields, flags masked to `0x03`.
#[inline]
pub(crate) fn encode_traceparent(
    trace_id: TraceId,
    span_id: SpanId,
    flags: TraceFlags,
) -> [u8; TRACEPARENT_LEN] {
    let mut buf = *b"00-00000000000000000000000000000000-0000000000000000-00";
    let t = trace_id.to_u128();
    // Each shift leaves at most 32 significant bits.
    buf[3..11].copy_from_slice(&encode_hex8((t >> 96) as u32));
    buf[11..19].copy_from_slice(&encode_hex8((t >> 64) as u32));
    buf[19..27].copy_from_slice(&encode_hex8((t >> 32) as u32));
    buf[27..35].copy_from_slice(&encode_hex8(t as u32));
    let s = span_id.to_u64();
    buf[36..44].copy_from_slice(&encode_hex8((s >> 32) as u32));
    buf[44..52].copy_from_slice(&encode_hex8(s as u32));
    let f = flags.known().to_u8();
    buf[53] = HEX_DIGITS[usize::from(f >> 4)];
    buf[54] = HEX_DIGITS[usize::from(f & 0x0f)];
    buf
}

/// The `traceparent` value for `cx`: always version `00`, flags masked to the known bits
/// (`0x03`). `cx.trace_state` is not part of it (see [`TraceState::header_value`]).
///
/// The ids are written as they are; callers must not propagate an invalid (all-zero)
/// context. [`Propagator::inject`](super::Propagator::inject) checks this.
///
/// # Examples
/// ```
/// use tracekit::{SpanContext, SpanId, TraceFlags, TraceId};
/// let cx = SpanContext {
///     trace_id: TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
///     span_id: SpanId::from_hex("00f067aa0ba902b7").unwrap(),
///     trace_flags: TraceFlags::from_u8(0xff),
///     trace_state: Default::default(),
///     is_remote: false,
/// };
/// let v = tracekit::propagation::format_traceparent(&cx);
/// assert_eq!(v, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03");
/// ```
#[inline]
pub fn format_traceparent(cx: &SpanContext) -> HeaderValue {
    let buf = encode_traceparent(cx.trace_id, cx.span_id, cx.trace_flags);
    // A fixed-size array: the byte check compiles to a few vector instructions.
    match HeaderValue::from_bytes(&buf) {
        Ok(v) => v,
        // Unreachable: the buffer only holds `0-9`, `a-f` and `-`. Degrade to a value
        // every receiver rejects (all-zero ids) rather than panic on the request path.
        Err(_) => HeaderValue::from_static(INVALID_TRACEPARENT),
    }
}

/// A syntactically shaped but invalid (all-zero) traceparent; only a fallback.
const INVALID_TRACEPARENT: &str = "00-00000000000000000000000000000000-0000000000000000-00";

/// The value of a `traceresponse` response header for the server span `cx`: the same
/// format as `traceparent` (version `00`, `cx`'s trace id and span id, known flags).
///
/// `traceresponse` is a Level 2 draft that the Level 3 draft replaced with a
/// `server-timing: trace;desc=<same value>` metric (interop.md §2.3). No conformance
/// test checks response headers. Only send it to callers you trust (W3C privacy section).
#[inline]
pub fn traceresponse_value(cx: &SpanContext) -> HeaderValue {
    format_traceparent(cx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::decode_hex8;

    const T: &str = "12345678901234567890123456789012";
    const P: &str = "1234567890123456";

    fn tp(version: &str, trace: &str, parent: &str, flags: &str) -> String {
        format!("{version}-{trace}-{parent}-{flags}")
    }

    #[test]
    fn swar_hex_matches_the_obvious_code() {
        let mut rng = fastrand::Rng::with_seed(7);
        for v in [0, 1, 9, 10, 15, 16, 0xdead_beef, u32::MAX]
            .into_iter()
            .chain(std::iter::repeat_with(|| rng.u32(..)).take(100_000))
        {
            let hex = format!("{v:08x}");
            assert_eq!(encode_hex8(v), hex.as_bytes(), "{v:#x}");
            let mut chunk = [0u8; 8];
            chunk.copy_from_slice(hex.as_bytes());
            assert_eq!(decode_hex8(chunk), Some(v), "{hex}");
        }
        // Every non-lowercase-hex byte, in every position, is rejected.
        for bad in (0..=255u8).filter(|b| !matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            for pos in 0..8 {
                let mut chunk = *b"0123abcd";
                chunk[pos] = bad;
                assert_eq!(decode_hex8(chunk), None, "{bad:#x} at {pos}");
            }
        }
        for hi in 0..=255u8 {
            for lo in 0..=255u8 {
                let s = [hi, lo];
                let expected = std::str::from_utf8(&s)
                    .ok()
                    .filter(|t| t.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
                    .and_then(|t| u8::from_str_radix(t, 16).ok());
                assert_eq!(decode_hex2(hi, lo), expected);
            }
        }
    }

    #[test]
    fn parses_a_valid_value() {
        let p = parse_traceparent(&tp("00", T, P, "01")).unwrap();
        assert_eq!(p.version, 0);
        assert_eq!(p.trace_id, TraceId::from_hex(T).unwrap());
        assert_eq!(p.parent_id, SpanId::from_hex(P).unwrap());
        assert_eq!(p.trace_flags.to_u8(), 0x01);
    }

    #[rustfmt::skip]
    #[test]
    fn rejections_name_the_broken_rule() {
        use TraceparentError as E;
        let zeros32 = "0".repeat(32);
        let cases: Vec<(String, TraceparentError)> = vec![
            (String::new(),                                    E::TooShort { len: 0 }),
            (tp("00", T, P, "01") + ".",                       E::TrailingData { len: 56 }),
            (tp("00", T, P, "01") + "-what-the-future",        E::TrailingData { len: 71 }),
            (tp("cc", T, P, "01") + ".what-the-future",        E::MissingDelimiter { position: 55 }),
            (tp("ff", T, P, "01"),                             E::ForbiddenVersion),
            (tp(".0", T, P, "01"),                             E::InvalidVersion),
            (tp("0.", T, P, "01"),                             E::InvalidVersion),
            (tp("CC", T, P, "01"),                             E::InvalidVersion),
            (tp("000", T, P, "01"),                            E::MissingDelimiter { position: 2 }),
            (tp("0000", T, P, "01"),                           E::MissingDelimiter { position: 2 }),
            (tp("0", T, P, "01"),                              E::TooShort { len: 54 }),
            (tp("00", &zeros32, P, "01"),                      E::TraceId(IdError::AllZero)),
            (tp("00", "A2345678901234567890123456789012", P, "01"), E::TraceId(IdError::NotLowerHex)),
            (tp("00", &(T.to_owned() + "3"), P, "01"),         E::TrailingData { len: 56 }),
            (tp("cc", &(T.to_owned() + "3"), P, "01"),         E::MissingDelimiter { position: 55 }),
            (tp("cc", &(T.to_owned() + "3"), P, "0"),          E::MissingDelimiter { position: 35 }),
            (tp("00", &T[1..], P, "01"),                       E::TooShort { len: 54 }),
            (tp("00", &T[1..], P, "01") + "0",                 E::MissingDelimiter { position: 35 }),
            (tp("00", T, "0000000000000000", "01"),            E::ParentId(IdError::AllZero)),
            (tp("00", T, ".234567890123456", "01"),            E::ParentId(IdError::NotLowerHex)),
            (tp("00", T, "12345678901234567", "0"),            E::MissingDelimiter { position: 52 }),
            (tp("00", T, P, ".0"),                             E::InvalidFlags),
            (tp("00", T, P, "0."),                             E::InvalidFlags),
            (tp("00", T, P, "0A"),                             E::InvalidFlags),
            (tp("00", T, P, "001"),                            E::TrailingData { len: 56 }),
            (tp("00", T, P, "1"),                              E::TooShort { len: 54 }),
            (format!("cc-{T}-{P}-01-{}", "x".repeat(500)),     E::TooLong { len: 556 }),
        ];
        for (input, err) in &cases {
            assert_eq!(parse_traceparent(input), Err(*err), "{input:?}");
        }
    }

    #[test]
    fn future_versions_read_the_first_55_characters() {
        for v in [
            tp("cc", T, P, "01"),
            tp("cc", T, P, "01") + "-what-the-future-will-be-like",
            tp("01", T, P, "01") + "-",
            tp("fe", T, P, "01") + "-x-y-z",
        ] {
            let p = parse_traceparent(&v).unwrap();
            assert_eq!(p.trace_id.to_string(), T, "{v}");
            assert_eq!(p.parent_id.to_string(), P, "{v}");
        }
        assert_eq!(
            parse_traceparent(&tp("cc", T, P, "01")).unwrap().version,
            0xcc
        );
    }

    #[test]
    fn ows_is_trimmed_but_nothing_else() {
        for v in [" {}", "\t{}", "{} ", "{}\t", "\t {} \t", "  \t\t{}\t\t  "] {
            let input = v.replace("{}", &tp("00", T, P, "01"));
            assert!(parse_traceparent(&input).is_ok(), "{input:?}");
        }
        for v in ["\n{}", "{}\r", "\u{a0}{}", "{}\u{0}"] {
            let input = v.replace("{}", &tp("00", T, P, "01"));
            assert!(parse_traceparent(&input).is_err(), "{input:?}");
        }
    }

    #[test]
    fn unknown_flag_bits_are_dropped_on_parse_and_format() {
        let p = parse_traceparent(&tp("00", T, P, "ff")).unwrap();
        assert_eq!(p.trace_flags.to_u8(), 0x03);
        let p = parse_traceparent(&tp("00", T, P, "02")).unwrap();
        assert!(p.trace_flags.is_random() && !p.trace_flags.is_sampled());
        let cx = SpanContext {
            trace_id: p.trace_id,
            span_id: p.parent_id,
            trace_flags: TraceFlags::from_u8(0xfd),
            trace_state: TraceState::default(),
            is_remote: false,
        };
        assert_eq!(format_traceparent(&cx), tp("00", T, P, "01").as_str());
    }

    #[test]
    fn length_cap_is_on_the_raw_value() {
        let ok = format!("cc-{T}-{P}-01-{}", "x".repeat(MAX_TRACEPARENT_LEN - 56));
        assert_eq!(ok.len(), MAX_TRACEPARENT_LEN);
        assert!(parse_traceparent(&ok).is_ok());
        let padded = format!(
            "{}{}",
            " ".repeat(MAX_TRACEPARENT_LEN - 54),
            tp("00", T, P, "01")
        );
        assert_eq!(
            parse_traceparent(&padded),
            Err(TraceparentError::TooLong {
                len: MAX_TRACEPARENT_LEN + 1
            })
        );
    }

    #[test]
    fn formats_version_00_zero_padded() {
        let cx = SpanContext {
            trace_id: TraceId::from_u128(1),
            span_id: SpanId::from_u64(0xab),
            trace_flags: TraceFlags::default(),
            trace_state: TraceState::default(),
            is_remote: true,
        };
        let v = format_traceparent(&cx);
        assert_eq!(v, "00-00000000000000000000000000000001-00000000000000ab-00");
        assert_eq!(traceresponse_value(&cx), v);
    }
}
