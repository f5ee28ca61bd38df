//! ClickHouse's `RowBinary` format, the subset the backend uses: `UInt8`, `UInt16` (`Date`),
//! `UInt32` (read only), `UInt64`, `Int64`, `String`, `FixedString(N)` and `Array(String)`. Numbers are
//! little-endian; lengths are unsigned LEB128 varints. The same bytes are read and written by
//! ClickHouse 18.16 and current versions (the format has not changed).

use crate::store::StoreError;

/// Appends `RowBinary` values to a buffer (one row is its columns in table order).
#[derive(Debug, Default)]
pub(super) struct Writer {
    /// The encoded bytes.
    pub(super) buf: Vec<u8>,
}

impl Writer {
    /// An empty writer with `capacity` bytes reserved.
    pub(super) fn with_capacity(capacity: usize) -> Self {
        Self {
            buf: Vec::with_capacity(capacity),
        }
    }

    pub(super) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    /// A `Date`: days since 1970-01-01.
    pub(super) fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(super) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(super) fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// A length: of an `Array`, whose `n` items follow (e.g. `n` [`Writer::bytes`] for an
    /// `Array(String)`), or of a `String` whose `n` bytes follow in parts ([`Writer::fixed`]).
    pub(super) fn len(&mut self, n: usize) {
        self.varint(n as u64);
    }

    fn varint(&mut self, mut v: u64) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.buf.push(byte);
                return;
            }
            self.buf.push(byte | 0x80);
        }
    }

    /// A `String` (any bytes).
    pub(super) fn bytes(&mut self, v: &[u8]) {
        self.varint(v.len() as u64);
        self.buf.extend_from_slice(v);
    }

    /// A `FixedString(N)`: exactly the bytes, no length.
    pub(super) fn fixed(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }
}

/// Reads `RowBinary` values from a response body.
#[derive(Debug)]
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn short() -> StoreError {
    StoreError::Backend("ClickHouse answer ended inside a row (RowBinary)".into())
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Whether every byte was read.
    pub(super) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        let end = self.pos.checked_add(n).ok_or_else(short)?;
        let slice = self.buf.get(self.pos..end).ok_or_else(short)?;
        self.pos = end;
        Ok(slice)
    }

    pub(super) fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.take(1)?[0])
    }

    pub(super) fn u32(&mut self) -> Result<u32, StoreError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes(b.try_into().map_err(|_| short())?))
    }

    pub(super) fn u64(&mut self) -> Result<u64, StoreError> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().map_err(|_| short())?))
    }

    pub(super) fn i64(&mut self) -> Result<i64, StoreError> {
        let b = self.take(8)?;
        Ok(i64::from_le_bytes(b.try_into().map_err(|_| short())?))
    }

    fn varint(&mut self) -> Result<usize, StoreError> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return usize::try_from(value).map_err(|_| short());
            }
        }
        Err(StoreError::Backend(
            "bad length in a RowBinary answer".into(),
        ))
    }

    /// A `String` as bytes.
    pub(super) fn bytes(&mut self) -> Result<&'a [u8], StoreError> {
        let n = self.varint()?;
        self.take(n)
    }

    /// A `String` that must be UTF-8 (what the backend wrote from Rust strings).
    pub(super) fn string(&mut self) -> Result<String, StoreError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec())
            .map_err(|_| StoreError::Backend("stored text is not UTF-8".into()))
    }

    /// A `FixedString(N)`.
    pub(super) fn fixed<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        let b = self.take(N)?;
        b.try_into().map_err(|_| short())
    }

    /// Every row to the end of the answer, each read by `row`.
    ///
    /// # Errors
    /// The first error `row` answers (a short or malformed answer).
    pub(super) fn rows<T>(
        mut self,
        mut row: impl FnMut(&mut Self) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        while !self.is_empty() {
            out.push(row(&mut self)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let mut w = Writer::default();
        w.u8(7);
        w.u16(20000);
        w.u64(u64::MAX - 1);
        w.i64(-5);
        w.bytes(&[b'x'; 300]);
        w.fixed(&[1, 2, 3, 4]);
        w.len(2);
        w.bytes(b"a");
        w.bytes(b"bc");
        let mut r = Reader::new(&w.buf);
        assert_eq!(r.u8().unwrap(), 7);
        assert_eq!(r.take(2).unwrap(), 20000u16.to_le_bytes());
        assert_eq!(r.u64().unwrap(), u64::MAX - 1);
        assert_eq!(r.i64().unwrap(), -5);
        assert_eq!(r.bytes().unwrap().len(), 300, "a two-byte length");
        assert_eq!(r.fixed::<4>().unwrap(), [1, 2, 3, 4]);
        assert_eq!(r.varint().unwrap(), 2);
        assert_eq!(r.string().unwrap(), "a");
        assert_eq!(r.string().unwrap(), "bc");
        assert!(r.is_empty());
        assert!(
            matches!(r.u8(), Err(StoreError::Backend(_))),
            "reading past the end"
        );
    }
}
