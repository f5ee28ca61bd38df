//! Trace and span identifiers and trace flags (W3C Trace Context Level 2, §3.2.2.3-§3.2.2.5).
//!
//! A [`TraceId`] is 16 bytes, a [`SpanId`] 8 bytes; both are written as lowercase,
//! zero-padded hex (32 and 16 characters). The all-zero value of either is invalid and
//! never generated. Generation uses a per-thread wyrand generator ([`fastrand`]): a few
//! nanoseconds, no lock, no system call.

use std::fmt;

/// Error from parsing an identifier or flags from hex text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The text does not have the exact length the identifier needs (32, 16 or 2 characters).
    #[error("expected {expected} hex characters, got {actual}")]
    Length {
        /// Characters required.
        expected: usize,
        /// Characters given.
        actual: usize,
    },
    /// A character is not lowercase hex (`0-9`, `a-f`). Uppercase is rejected (W3C §3.2.2).
    #[error("not lowercase hex")]
    NotLowerHex,
    /// The identifier is all zeros, which W3C Trace Context and OTLP both define as invalid.
    #[error("all-zero identifier is invalid")]
    AllZero,
}

pub(crate) const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = ONES * 0x80;

/// Decodes 8 lowercase hex digits (the first one most significant) with SWAR arithmetic
/// on one `u64`: no per-byte branch or table. `None` if any byte is not `0-9a-f`.
#[cfg(test)]
#[inline(always)]
pub(crate) fn decode_hex8(chunk: [u8; 8]) -> Option<u32> {
    let (v, bad) = hex8(chunk);
    (bad == 0).then_some(v)
}

/// The value of 8 hex digits and an error mask, non-zero if any byte is not lowercase hex
/// (the value is then meaningless). Callers OR the masks of several chunks and test once.
#[inline(always)]
pub(crate) fn hex8(chunk: [u8; 8]) -> (u32, u64) {
    let x = u64::from_le_bytes(chunk);
    // For bytes below 0x80, adding 0x80 - c never carries into the next byte, and the high
    // bit of each byte of `ge(c)` says "this byte >= c". A byte at or above 0x80 can carry
    // and garble its neighbours' tests, but it is rejected by `x & HIGH` on its own.
    let ge = |c: u8| x.wrapping_add(ONES * u64::from(0x80 - c));
    let digit = ge(b'0') & !ge(b'9' + 1);
    let alpha = ge(b'a') & !ge(b'f' + 1);
    let bad = (x | !(digit | alpha)) & HIGH;
    // '0'-'9' -> low nibble; 'a'-'f' (bit 6 set) -> low nibble (1-6) + 9.
    let n = (x & (ONES * 0x0f)) + ((x >> 6) & ONES) * 9;
    // Byte i holds digit i. Pack pairs into bytes 0, 2, 4, 6; then quads into the low
    // halves of the two 32-bit lanes; then the two lanes.
    let p = ((n << 4) | (n >> 8)) & 0x00ff_00ff_00ff_00ff;
    let q = ((p << 8) | (p >> 16)) & 0x0000_ffff_0000_ffff;
    // The cast keeps the low 32 bits: lane 0 shifted up, lane 1 shifted down.
    (((q << 16) | (q >> 32)) as u32, bad)
}

/// Parses exactly `N` lowercase hex digits into an integer. Rejects uppercase and anything
/// that is not hex, so `+1`, ` 1` and `0x` prefixes all fail.
#[inline]
pub(crate) fn parse_lower_hex<const N: usize>(s: &[u8]) -> Result<u128, IdError> {
    if s.len() != N {
        return Err(IdError::Length {
            expected: N,
            actual: s.len(),
        });
    }
    if N.is_multiple_of(8) {
        // Ids: 8 digits at a time (SWAR), one test for the whole id.
        let mut v: u128 = 0;
        let mut bad = 0;
        for c in s.chunks_exact(8) {
            let mut chunk = [0u8; 8];
            chunk.copy_from_slice(c);
            let (digits, b) = hex8(chunk);
            v = (v << 32) | u128::from(digits);
            bad |= b;
        }
        return if bad == 0 {
            Ok(v)
        } else {
            Err(IdError::NotLowerHex)
        };
    }
    let mut v: u128 = 0;
    for &c in s {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return Err(IdError::NotLowerHex),
        };
        v = (v << 4) | u128::from(d);
    }
    Ok(v)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Writes `v` as `N` lowercase hex digits into `out` (which must be `N` bytes long).
#[inline]
pub(crate) fn write_lower_hex<const N: usize>(mut v: u128, out: &mut [u8]) {
    for i in (0..N).rev() {
        out[i] = HEX[(v & 0xf) as usize];
        v >>= 4;
    }
}

/// A 16-byte trace identifier, shared by every span of one trace.
///
/// Displayed as 32 lowercase hex characters. `TraceId::INVALID` (all zeros) is never
/// generated. Generated ids are fully random, so the W3C `random` flag (0x02) may be set
/// on traces this library starts.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TraceId(u128);

impl TraceId {
    /// The invalid all-zero trace id.
    pub const INVALID: TraceId = TraceId(0);

    /// A new random, non-zero trace id.
    #[inline]
    pub fn random() -> TraceId {
        loop {
            let v = fastrand::u128(..);
            if v != 0 {
                return TraceId(v);
            }
        }
    }

    /// Builds a trace id from its 16 big-endian bytes (the OTLP `trace_id` field).
    pub const fn from_bytes(bytes: [u8; 16]) -> TraceId {
        TraceId(u128::from_be_bytes(bytes))
    }

    /// The 16 big-endian bytes, as OTLP carries them.
    pub const fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    /// Builds a trace id from its integer value.
    pub const fn from_u128(v: u128) -> TraceId {
        TraceId(v)
    }

    /// The integer value.
    pub const fn to_u128(self) -> u128 {
        self.0
    }

    /// Whether this id is not all zeros.
    pub const fn is_valid(self) -> bool {
        self.0 != 0
    }

    /// Parses exactly 32 lowercase hex characters.
    ///
    /// # Errors
    /// [`IdError::Length`], [`IdError::NotLowerHex`] or [`IdError::AllZero`].
    ///
    /// # Examples
    /// ```
    /// let id = tracekit::TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
    /// assert_eq!(id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
    /// assert!(tracekit::TraceId::from_hex("4BF92F3577B34DA6A3CE929D0E0E4736").is_err());
    /// ```
    pub fn from_hex(s: &str) -> Result<TraceId, IdError> {
        match parse_lower_hex::<32>(s.as_bytes())? {
            0 => Err(IdError::AllZero),
            v => Ok(TraceId(v)),
        }
    }

    /// The 32-character lowercase hex form, without allocating.
    pub fn to_hex(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        write_lower_hex::<32>(self.0, &mut out);
        out
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.to_hex();
        // The buffer only ever holds ASCII hex digits.
        f.write_str(std::str::from_utf8(&hex).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

impl std::str::FromStr for TraceId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TraceId::from_hex(s)
    }
}

/// An 8-byte span identifier, unique within its trace.
///
/// Displayed as 16 lowercase hex characters. `SpanId::INVALID` (all zeros) is never generated.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SpanId(u64);

impl SpanId {
    /// The invalid all-zero span id.
    pub const INVALID: SpanId = SpanId(0);

    /// A new random, non-zero span id.
    #[inline]
    pub fn random() -> SpanId {
        loop {
            let v = fastrand::u64(..);
            if v != 0 {
                return SpanId(v);
            }
        }
    }

    /// Builds a span id from its 8 big-endian bytes (the OTLP `span_id` field).
    pub const fn from_bytes(bytes: [u8; 8]) -> SpanId {
        SpanId(u64::from_be_bytes(bytes))
    }

    /// The 8 big-endian bytes, as OTLP carries them.
    pub const fn to_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }

    /// Builds a span id from its integer value.
    pub const fn from_u64(v: u64) -> SpanId {
        SpanId(v)
    }

    /// The integer value.
    pub const fn to_u64(self) -> u64 {
        self.0
    }

    /// Whether this id is not all zeros.
    pub const fn is_valid(self) -> bool {
        self.0 != 0
    }

    /// Parses exactly 16 lowercase hex characters.
    ///
    /// # Errors
    /// [`IdError::Length`], [`IdError::NotLowerHex`] or [`IdError::AllZero`].
    pub fn from_hex(s: &str) -> Result<SpanId, IdError> {
        match parse_lower_hex::<16>(s.as_bytes())? {
            0 => Err(IdError::AllZero),
            // At most 16 hex digits were parsed, so the value fits in 64 bits.
            v => Ok(SpanId(v as u64)),
        }
    }

    /// The 16-character lowercase hex form, without allocating.
    pub fn to_hex(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        write_lower_hex::<16>(u128::from(self.0), &mut out);
        out
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.to_hex();
        f.write_str(std::str::from_utf8(&hex).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({self})")
    }
}

impl std::str::FromStr for SpanId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SpanId::from_hex(s)
    }
}

/// The W3C `trace-flags` byte (Trace Context Level 2 §3.2.2.5).
///
/// Only bits this library understands are kept on output: `0x01` sampled and `0x02`
/// random-trace-id. Test single bits; never compare the whole byte.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TraceFlags(u8);

impl TraceFlags {
    /// The `sampled` bit (0x01): the caller may have recorded its span.
    pub const SAMPLED: TraceFlags = TraceFlags(0x01);
    /// The `random` bit (0x02): the right-most 7 bytes of the trace id are random (Level 2).
    pub const RANDOM: TraceFlags = TraceFlags(0x02);
    /// The bits this library propagates; every other bit is zeroed on output.
    pub const KNOWN_MASK: u8 = 0x03;

    /// Flags from a raw byte. Unknown bits are kept here and masked on output.
    pub const fn from_u8(v: u8) -> TraceFlags {
        TraceFlags(v)
    }

    /// The raw byte.
    pub const fn to_u8(self) -> u8 {
        self.0
    }

    /// Whether the sampled bit is set.
    pub const fn is_sampled(self) -> bool {
        self.0 & 0x01 != 0
    }

    /// Whether the random bit is set.
    pub const fn is_random(self) -> bool {
        self.0 & 0x02 != 0
    }

    /// These flags with the sampled bit set or cleared.
    #[must_use]
    pub const fn with_sampled(self, sampled: bool) -> TraceFlags {
        if sampled {
            TraceFlags(self.0 | 0x01)
        } else {
            TraceFlags(self.0 & !0x01)
        }
    }

    /// These flags with the random bit set or cleared.
    #[must_use]
    pub const fn with_random(self, random: bool) -> TraceFlags {
        if random {
            TraceFlags(self.0 | 0x02)
        } else {
            TraceFlags(self.0 & !0x02)
        }
    }

    /// These flags with only the known bits kept.
    #[must_use]
    pub const fn known(self) -> TraceFlags {
        TraceFlags(self.0 & Self::KNOWN_MASK)
    }
}

impl fmt::Debug for TraceFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceFlags({:02x})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_id_round_trips_through_hex_and_bytes() {
        for _ in 0..1000 {
            let id = TraceId::random();
            assert!(id.is_valid());
            let s = id.to_string();
            assert_eq!(s.len(), 32);
            assert_eq!(s, s.to_lowercase());
            assert_eq!(TraceId::from_hex(&s), Ok(id));
            assert_eq!(TraceId::from_bytes(id.to_bytes()), id);
        }
    }

    #[test]
    fn span_id_round_trips_through_hex_and_bytes() {
        for _ in 0..1000 {
            let id = SpanId::random();
            assert!(id.is_valid());
            let s = id.to_string();
            assert_eq!(s.len(), 16);
            assert_eq!(SpanId::from_hex(&s), Ok(id));
            assert_eq!(SpanId::from_bytes(id.to_bytes()), id);
        }
    }

    #[test]
    fn small_values_are_zero_padded() {
        assert_eq!(TraceId::from_u128(1).to_string(), format!("{:032x}", 1));
        assert_eq!(SpanId::from_u64(0xab).to_string(), "00000000000000ab");
    }

    #[rustfmt::skip]
    #[test]
    fn invalid_hex_is_rejected() {
        let cases: &[(&str, IdError)] = &[
            ("00000000000000000000000000000000", IdError::AllZero),
            ("4BF92F3577B34DA6A3CE929D0E0E4736", IdError::NotLowerHex),
            ("4bf92f3577b34da6a3ce929d0e0e473",  IdError::Length { expected: 32, actual: 31 }),
            ("4bf92f3577b34da6a3ce929d0e0e47361", IdError::Length { expected: 32, actual: 33 }),
            ("4bf92f3577b34da6a3ce929d0e0e473g", IdError::NotLowerHex),
            ("+bf92f3577b34da6a3ce929d0e0e4736", IdError::NotLowerHex),
        ];
        for (input, err) in cases {
            assert_eq!(TraceId::from_hex(input), Err(*err), "{input}");
        }
        assert_eq!(SpanId::from_hex("0000000000000000"), Err(IdError::AllZero));
        assert_eq!(SpanId::from_hex("00f067aa0ba902b"), Err(IdError::Length { expected: 16, actual: 15 }));
        assert_eq!(SpanId::from_hex("00F067AA0BA902B7"), Err(IdError::NotLowerHex));
    }

    #[test]
    fn flags_test_single_bits() {
        let f = TraceFlags::from_u8(0xff);
        assert!(f.is_sampled() && f.is_random());
        assert_eq!(f.known().to_u8(), 0x03);
        assert!(!f.with_sampled(false).is_sampled());
        assert!(TraceFlags::default().with_random(true).is_random());
    }
}
