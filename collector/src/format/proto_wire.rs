//! # A protobuf wire-format reader over one byte slice
//!
//! For the hand-written OTLP span decoder ([`super::otlp_proto`]): it reads keys, varints,
//! fixed-width numbers and length-delimited fields in place (a bytes field is a sub-slice of
//! the request, no copy), and fails where prost 0.14 fails, with the same message
//! ([`DecodeError`] prints as prost's `DecodeError` does), so that the answer to a malformed
//! request did not change when the decoder did:
//!
//! - a nested message is read from the whole remaining buffer, not from a slice cut to its
//!   length: a field may run past the message's end, which is then "delimited length
//!   exceeded" (as prost's `merge_loop`);
//! - the recursion budget ([`RECURSION_LIMIT`]) is checked before each nested message and
//!   each skipped unknown field, as prost's `DecodeContext` does;
//! - unknown fields are skipped, groups included.

/// prost's recursion limit: the nesting depth at which a message or an unknown field fails
/// with "recursion limit reached".
pub(crate) const RECURSION_LIMIT: u32 = 100;

/// A field's wire type (the low 3 bits of its key); printed as prost prints its `WireType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WireType {
    /// 0: a varint.
    Varint = 0,
    /// 1: 8 bytes, little-endian.
    SixtyFourBit = 1,
    /// 2: a varint length, then that many bytes.
    LengthDelimited = 2,
    /// 3: the start of a group (deprecated; only ever skipped here).
    StartGroup = 3,
    /// 4: the end of a group.
    EndGroup = 4,
    /// 5: 4 bytes, little-endian.
    ThirtyTwoBit = 5,
}

/// Why the bytes are not a valid message: the root cause, worded as prost words it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeErrorKind {
    /// A varint longer than 10 bytes, overflowing 64 bits, or cut off by the buffer's end.
    #[error("invalid varint")]
    InvalidVarint,
    /// Nesting deeper than [`RECURSION_LIMIT`].
    #[error("recursion limit reached")]
    RecursionLimitReached,
    /// A key whose low 3 bits are 6 or 7.
    #[error("invalid wire type value: {0}")]
    InvalidWireType(u64),
    /// A key that does not fit 32 bits.
    #[error("invalid key value: {0}")]
    InvalidKey(u64),
    /// Field number 0.
    #[error("invalid tag value: 0")]
    InvalidTag,
    /// A known field with another wire type than its declaration's.
    #[error("invalid wire type: {actual:?} (expected {expected:?})")]
    UnexpectedWireType {
        /// The wire type in the key.
        actual: WireType,
        /// The wire type of the field's declared type.
        expected: WireType,
    },
    /// A length or fixed-width value past the end of the buffer.
    #[error("buffer underflow")]
    BufferUnderflow,
    /// A nested message's last field ran past the message's declared length.
    #[error("delimited length exceeded")]
    DelimitedLengthExceeded,
    /// An end-group key without its start, or for another group.
    #[error("unexpected end group tag")]
    UnexpectedEndGroupTag,
}

/// A decoding failure: the root cause and the `(message, field)` path to it, innermost first
/// (prost's `DecodeError`, printed the same way).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to decode Protobuf message: {}{}", path(&.0.stack), .0.kind)]
pub(crate) struct DecodeError(Box<Inner>);

/// A [`DecodeError`]'s contents (boxed: results stay small on the hot path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Inner {
    /// `(message, field)`, innermost first.
    stack: Vec<(&'static str, &'static str)>,
    kind: DecodeErrorKind,
}

impl DecodeError {
    /// Adds the field this error happened in, one level further out.
    #[cold]
    pub(crate) fn at(mut self, message: &'static str, field: &'static str) -> Self {
        self.0.stack.push((message, field));
        self
    }

    /// The root cause.
    #[cfg(test)]
    pub(crate) fn kind(&self) -> &DecodeErrorKind {
        &self.0.kind
    }
}

impl From<DecodeErrorKind> for DecodeError {
    #[cold]
    fn from(kind: DecodeErrorKind) -> Self {
        Self(Box::new(Inner {
            stack: Vec::new(),
            kind,
        }))
    }
}

/// `Message.field: ` for each level of the path.
fn path(stack: &[(&'static str, &'static str)]) -> String {
    stack
        .iter()
        .map(|(message, field)| format!("{message}.{field}: "))
        .collect()
}

/// The result of every read.
pub(crate) type Result<T> = std::result::Result<T, DecodeError>;

#[cold]
fn fail<T>(kind: DecodeErrorKind) -> Result<T> {
    Err(kind.into())
}

/// Fails unless `actual` is `expected` (prost's `check_wire_type`).
#[inline]
pub(crate) fn check_wire_type(expected: WireType, actual: WireType) -> Result<()> {
    if expected == actual {
        Ok(())
    } else {
        fail(DecodeErrorKind::UnexpectedWireType { actual, expected })
    }
}

/// A cursor over the whole request. Positions are byte offsets into it; a nested message is
/// the range from after its length to [`Reader::message`]'s `end`.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// The current offset, bytes.
    #[cfg(test)]
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Whether bytes are left before `end` (prost: `buf.remaining() > limit`).
    #[inline]
    pub(crate) fn before(&self, end: usize) -> bool {
        self.pos < end
    }

    /// Whether bytes are left at all.
    #[inline]
    pub(crate) fn has_remaining(&self) -> bool {
        self.pos < self.buf.len()
    }

    #[inline]
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// A varint (at most 10 bytes, the 10th at most 1).
    #[inline]
    pub(crate) fn varint(&mut self) -> Result<u64> {
        match self.buf.get(self.pos) {
            Some(&b) if b < 0x80 => {
                self.pos += 1;
                Ok(u64::from(b))
            }
            _ => self.varint_long(),
        }
    }

    fn varint_long(&mut self) -> Result<u64> {
        let mut value = 0u64;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos + i) else {
                break;
            };
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                if i == 9 && b >= 2 {
                    break;
                }
                self.pos += i + 1;
                return Ok(value);
            }
        }
        fail(DecodeErrorKind::InvalidVarint)
    }

    /// A field key: `(field number, wire type)` (prost's `decode_key`).
    #[inline]
    pub(crate) fn key(&mut self) -> Result<(u32, WireType)> {
        let key = self.varint()?;
        if key > u64::from(u32::MAX) {
            return fail(DecodeErrorKind::InvalidKey(key));
        }
        let wire_type = match key & 7 {
            0 => WireType::Varint,
            1 => WireType::SixtyFourBit,
            2 => WireType::LengthDelimited,
            3 => WireType::StartGroup,
            4 => WireType::EndGroup,
            5 => WireType::ThirtyTwoBit,
            other => return fail(DecodeErrorKind::InvalidWireType(other)),
        };
        let tag = (key >> 3) as u32;
        if tag == 0 {
            return fail(DecodeErrorKind::InvalidTag);
        }
        Ok((tag, wire_type))
    }

    /// A varint-typed field's value (`int32`, `uint32`, `int64`, `bool` take it from here).
    #[inline]
    pub(crate) fn varint_field(&mut self, wire_type: WireType) -> Result<u64> {
        check_wire_type(WireType::Varint, wire_type)?;
        self.varint()
    }

    /// A `fixed32` field's value.
    #[inline]
    pub(crate) fn fixed32(&mut self, wire_type: WireType) -> Result<u32> {
        check_wire_type(WireType::ThirtyTwoBit, wire_type)?;
        let bytes = self.take(4)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    /// A `fixed64` (or, through its bits, `double`) field's value.
    #[inline]
    pub(crate) fn fixed64(&mut self, wire_type: WireType) -> Result<u64> {
        check_wire_type(WireType::SixtyFourBit, wire_type)?;
        let bytes = self.take(8)?;
        let mut le = [0u8; 8];
        le.copy_from_slice(bytes);
        Ok(u64::from_le_bytes(le))
    }

    /// A `bytes` (or `string`) field's value, borrowed from the buffer.
    #[inline]
    pub(crate) fn bytes(&mut self, wire_type: WireType) -> Result<&'a [u8]> {
        check_wire_type(WireType::LengthDelimited, wire_type)?;
        let len = self.varint()?;
        if len > self.remaining() as u64 {
            return fail(DecodeErrorKind::BufferUnderflow);
        }
        self.take(len as usize)
    }

    #[inline]
    fn take(&mut self, len: usize) -> Result<&'a [u8]> {
        if len > self.remaining() {
            return fail(DecodeErrorKind::BufferUnderflow);
        }
        let bytes = &self.buf[self.pos..self.pos + len];
        self.pos += len;
        Ok(bytes)
    }

    /// Enters a nested message field with recursion budget `depth` (prost's
    /// `message::merge`): checks the wire type and the budget, reads the length; the message's
    /// fields are then read while [`Reader::before`] `end`, with budget `depth - 1`, and
    /// [`Reader::finish`] closes it.
    #[inline]
    pub(crate) fn message(&mut self, wire_type: WireType, depth: u32) -> Result<usize> {
        check_wire_type(WireType::LengthDelimited, wire_type)?;
        if depth == 0 {
            return fail(DecodeErrorKind::RecursionLimitReached);
        }
        let len = self.varint()?;
        if len > self.remaining() as u64 {
            return fail(DecodeErrorKind::BufferUnderflow);
        }
        Ok(self.pos + len as usize)
    }

    /// Reads a message's fields up to `end` (the whole request, or a nested message's end
    /// from [`Reader::message`]) with recursion budget `depth` (the message's own, less one
    /// for a nested one): `field(reader, tag, wire type, depth)` reads each field it knows
    /// and answers `true`, or `false` to have it skipped. Then closes the message
    /// ([`Reader::finish`]).
    #[inline]
    pub(crate) fn fields(
        &mut self,
        end: usize,
        depth: u32,
        mut field: impl FnMut(&mut Self, u32, WireType, u32) -> Result<bool>,
    ) -> Result<()> {
        while self.before(end) {
            let (tag, wire_type) = self.key()?;
            if !field(self, tag, wire_type, depth)? {
                self.skip(wire_type, tag, depth)?;
            }
        }
        self.finish(end)
    }

    /// Closes a nested message: its last field must have ended exactly at `end`.
    #[inline]
    pub(crate) fn finish(&self, end: usize) -> Result<()> {
        if self.pos == end {
            Ok(())
        } else {
            fail(DecodeErrorKind::DelimitedLengthExceeded)
        }
    }

    /// Skips an unknown field (prost's `skip_field`), groups included.
    pub(crate) fn skip(&mut self, wire_type: WireType, tag: u32, depth: u32) -> Result<()> {
        if depth == 0 {
            return fail(DecodeErrorKind::RecursionLimitReached);
        }
        let len = match wire_type {
            WireType::Varint => {
                self.varint()?;
                0
            }
            WireType::ThirtyTwoBit => 4,
            WireType::SixtyFourBit => 8,
            WireType::LengthDelimited => self.varint()?,
            WireType::StartGroup => loop {
                let (inner_tag, inner_wire_type) = self.key()?;
                if inner_wire_type == WireType::EndGroup {
                    if inner_tag != tag {
                        return fail(DecodeErrorKind::UnexpectedEndGroupTag);
                    }
                    break 0;
                }
                self.skip(inner_wire_type, inner_tag, depth - 1)?;
            },
            WireType::EndGroup => return fail(DecodeErrorKind::UnexpectedEndGroupTag),
        };
        if len > self.remaining() as u64 {
            return fail(DecodeErrorKind::BufferUnderflow);
        }
        self.pos += len as usize;
        Ok(())
    }

    /// How many fields numbered `tags[i]` the message from here to `end` holds, for sizing
    /// `Vec`s before they fill. A hint only: counting stops, short, at the first malformed
    /// field (the decode proper then reports it) and at groups.
    pub(crate) fn count_fields<const N: usize>(&self, end: usize, tags: [u32; N]) -> [usize; N] {
        let mut counts = [0usize; N];
        let mut probe = Reader {
            buf: &self.buf[..end.min(self.buf.len())],
            pos: self.pos,
        };
        while probe.has_remaining() {
            let Ok((tag, wire_type)) = probe.key() else {
                break;
            };
            if let Some(i) = tags.iter().position(|t| *t == tag) {
                counts[i] += 1;
            }
            let skipped = match wire_type {
                WireType::StartGroup | WireType::EndGroup => break,
                other => probe.skip(other, tag, 1),
            };
            if skipped.is_err() {
                break;
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(bytes: &[u8]) -> Result<u64> {
        Reader::new(bytes).varint()
    }

    #[test]
    fn varints_read_as_prost_reads_them() {
        use prost::encoding::decode_varint;
        let cases: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            vec![0x7f],
            vec![0x80],
            vec![0x80, 0x01],
            vec![0xff, 0xff, 0xff, 0xff, 0x0f],
            vec![0xff; 9],
            [vec![0xff; 9], vec![0x01]].concat(),
            [vec![0xff; 9], vec![0x02]].concat(),
            [vec![0x80; 9], vec![0x00]].concat(),
            [vec![0xff; 10], vec![0x00]].concat(),
            vec![0xff; 11],
            [vec![0x80; 3], vec![0x00, 0x05]].concat(),
        ];
        for bytes in cases {
            let mut theirs = &bytes[..];
            let expected = decode_varint(&mut theirs).map_err(|e| e.to_string());
            let mut reader = Reader::new(&bytes);
            let ours = reader.varint().map_err(|e| e.to_string());
            assert_eq!(ours, expected, "{bytes:02x?}");
            if ours.is_ok() {
                assert_eq!(reader.pos(), bytes.len() - theirs.len(), "{bytes:02x?}");
            }
        }
        assert_eq!(varint(&[0x96, 0x01]).unwrap(), 150);
    }

    #[test]
    fn keys_fail_as_prost_words_it() {
        let key = |bytes: &[u8]| Reader::new(bytes).key().map_err(|e| e.to_string());
        assert_eq!(key(&[0x08]), Ok((1, WireType::Varint)));
        assert_eq!(
            key(&[0x07]).unwrap_err(),
            "failed to decode Protobuf message: invalid wire type value: 7"
        );
        assert_eq!(
            key(&[0x02]).unwrap_err(),
            "failed to decode Protobuf message: invalid tag value: 0"
        );
        for bytes in [
            &[0xff, 0xff, 0xff, 0xff, 0x10][..],
            &[0xff, 0xff, 0xff, 0xff, 0x0f],
            &[0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
            &[0x06],
            &[0x8c, 0x01],
        ] {
            let mut theirs = bytes;
            let expected = prost::encoding::decode_key(&mut theirs)
                .map(|(tag, wire_type)| (tag, wire_type as u8))
                .map_err(|e| e.to_string());
            let ours = key(bytes).map(|(tag, wire_type)| (tag, wire_type as u8));
            assert_eq!(ours, expected, "{bytes:02x?}");
        }
    }

    #[test]
    fn errors_print_their_path_innermost_first() {
        let err = DecodeError::from(DecodeErrorKind::BufferUnderflow)
            .at("KeyValue", "key")
            .at("Span", "attributes");
        assert_eq!(
            err.to_string(),
            "failed to decode Protobuf message: KeyValue.key: Span.attributes: buffer underflow"
        );
        let err = check_wire_type(WireType::Varint, WireType::LengthDelimited).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("invalid wire type: LengthDelimited (expected Varint)")
        );
    }

    #[test]
    fn skipping_groups_and_the_recursion_budget() {
        // Field 5, a group holding a varint field 1, closed by its end-group key.
        let group = [0x2b, 0x08, 0x01, 0x2c, 0xff];
        let mut reader = Reader::new(&group);
        let (tag, wire_type) = reader.key().unwrap();
        reader.skip(wire_type, tag, 2).unwrap();
        assert_eq!(reader.pos(), 4);
        let mut reader = Reader::new(&group);
        let (tag, wire_type) = reader.key().unwrap();
        assert_eq!(
            reader.skip(wire_type, tag, 1).unwrap_err().kind(),
            &DecodeErrorKind::RecursionLimitReached
        );
        // A group closed with another field number.
        let mut reader = Reader::new(&[0x2b, 0x34]);
        let (tag, wire_type) = reader.key().unwrap();
        assert_eq!(
            reader.skip(wire_type, tag, 5).unwrap_err().kind(),
            &DecodeErrorKind::UnexpectedEndGroupTag
        );
    }

    #[test]
    fn counting_stops_short_on_malformed_fields() {
        // Field 9 twice (length 0), field 2 once, then a field whose length runs past the end.
        let bytes = [0x4a, 0x00, 0x12, 0x00, 0x4a, 0x00, 0x4a, 0x05, 0x00];
        let reader = Reader::new(&bytes);
        assert_eq!(reader.count_fields(bytes.len(), [9, 2]), [3, 1]);
        assert_eq!(reader.count_fields(4, [9, 2]), [1, 1]);
    }
}
