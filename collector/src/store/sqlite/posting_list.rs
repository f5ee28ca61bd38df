//! The encoded entries of one posting row of the attribute index (`attr_postings.rs`), and
//! the SQL function that looks one entry up in them.
//!
//! An entry is `(start_ns, block)`: the trace's start when the entry was written and the
//! `span_blocks.id` of the trace's first block (its smallest id, never changed while the
//! trace is stored: a trace's later blocks get larger ids, and its blocks are deleted only with
//! it). The entries are sorted newest first, by start then block, both descending, and
//! distinct. Encoded:
//!
//! ```text
//! varint count
//! first entry:  zigzag varint start, zigzag varint block
//! each next:    varint (previous start - start), zigzag varint (block - previous block)
//! ```
//!
//! Varints are LEB128 (7 bits a byte, low first, at most 10 bytes). A list is read only
//! through [`Entries`], which checks every step ([`PostingError`]): a damaged list decodes to
//! other entries or fails, never panics, and never allocates by its count.

use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, Error};
use thiserror::Error as ThisError;

/// One entry: the trace's start (ns since the epoch) and its first block's `span_blocks.id`.
pub(super) type Entry = (i64, i64);

/// Why an encoded posting list could not be read.
#[derive(Debug, Clone, PartialEq, Eq, ThisError)]
pub(super) enum PostingError {
    /// The bytes end inside a varint.
    #[error("posting list truncated at byte {at}")]
    Truncated { at: usize },
    /// A varint runs past 10 bytes or 64 bits.
    #[error("posting list varint too long at byte {at}")]
    Overlong { at: usize },
    /// A start delta that takes the start below `i64::MIN`.
    #[error("posting list entry {index} out of range")]
    OutOfRange { index: u64 },
    /// Bytes left after the last entry the count promised.
    #[error("posting list has {extra} bytes after its {count} entries")]
    Trailing { extra: usize, count: u64 },
}

fn push_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Encodes `entries`, which must be sorted newest first and distinct ([`sort_entries`]).
pub(super) fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * 5 + 10);
    push_varint(&mut out, entries.len() as u64);
    let mut prev: Option<Entry> = None;
    for &(start, block) in entries {
        match prev {
            None => {
                push_varint(&mut out, zigzag(start));
                push_varint(&mut out, zigzag(block));
            }
            Some((p_start, p_block)) => {
                // Sorted newest first: the difference is >= 0 and fits a u64.
                push_varint(&mut out, p_start.abs_diff(start));
                push_varint(&mut out, zigzag(block.wrapping_sub(p_block)));
            }
        }
        prev = Some((start, block));
    }
    out
}

/// Sorts `entries` newest first (start, then block, descending) and drops repeats.
pub(super) fn sort_entries(entries: &mut Vec<Entry>) {
    entries.sort_unstable_by(|a, b| b.cmp(a));
    entries.dedup();
}

/// The entries of an encoded list, newest first; after the first error, nothing more.
#[derive(Debug, Clone)]
pub(super) struct Entries<'a> {
    bytes: &'a [u8],
    at: usize,
    count: u64,
    index: u64,
    prev: Entry,
    failed: bool,
}

impl<'a> Entries<'a> {
    /// Starts reading `bytes`.
    ///
    /// # Errors
    /// [`PostingError`] when the count cannot be read.
    pub(super) fn new(bytes: &'a [u8]) -> Result<Self, PostingError> {
        let mut entries = Self {
            bytes,
            at: 0,
            count: 0,
            index: 0,
            prev: (0, 0),
            failed: false,
        };
        entries.count = entries.varint()?;
        Ok(entries)
    }

    fn varint(&mut self) -> Result<u64, PostingError> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let Some(&b) = self.bytes.get(self.at) else {
                return Err(PostingError::Truncated { at: self.at });
            };
            self.at += 1;
            let low = u64::from(b & 0x7f);
            if shift == 63 && low > 1 {
                return Err(PostingError::Overlong { at: self.at - 1 });
            }
            v |= low << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(PostingError::Overlong { at: self.at - 1 })
    }

    fn step(&mut self) -> Result<Entry, PostingError> {
        let (a, b) = (self.varint()?, self.varint()?);
        let entry = if self.index == 0 {
            (unzigzag(a), unzigzag(b))
        } else {
            let start = i64::try_from(i128::from(self.prev.0) - i128::from(a))
                .map_err(|_| PostingError::OutOfRange { index: self.index })?;
            // Encoded as a wrapping difference: any delta gives a valid id.
            (start, self.prev.1.wrapping_add(unzigzag(b)))
        };
        self.index += 1;
        self.prev = entry;
        Ok(entry)
    }
}

impl Iterator for Entries<'_> {
    type Item = Result<Entry, PostingError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.index == self.count {
            let extra = self.bytes.len().saturating_sub(self.at);
            if extra == 0 {
                return None;
            }
            self.failed = true;
            return Some(Err(PostingError::Trailing {
                extra,
                count: self.count,
            }));
        }
        let step = self.step();
        self.failed = step.is_err();
        Some(step)
    }
}

/// Every entry of `bytes`, newest first.
///
/// # Errors
/// [`PostingError`] for a damaged list.
pub(super) fn decode(bytes: &[u8]) -> Result<Vec<Entry>, PostingError> {
    Entries::new(bytes)?.collect()
}

/// Whether the list `bytes` holds the entry `(start, block)`: read newest first up to the
/// first entry older than `start`.
///
/// # Errors
/// [`PostingError`] for a damaged list (up to that entry).
pub(super) fn contains(bytes: &[u8], start: i64, block: i64) -> Result<bool, PostingError> {
    for entry in Entries::new(bytes)? {
        let (s, b) = entry?;
        if s < start {
            break;
        }
        if s == start && b == block {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `spanline_posting_has(list, start_ns, block)`: whether the posting list holds that entry
/// (false for a NULL start or block: a trace without blocks has no entry).
pub(super) const POSTING_HAS: &str = "spanline_posting_has";

/// Registers [`POSTING_HAS`] on `conn` (with the block probe, on every connection that
/// searches: `block_probe::register`). Errors: SQLite's.
pub(super) fn register(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function(
        POSTING_HAS,
        3,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        posting_has,
    )
}

fn posting_has(ctx: &Context<'_>) -> rusqlite::Result<bool> {
    let (ValueRef::Integer(start), ValueRef::Integer(block)) = (ctx.get_raw(1), ctx.get_raw(2))
    else {
        return Ok(false);
    };
    let ValueRef::Blob(list) = ctx.get_raw(0) else {
        return Ok(false);
    };
    contains(list, start, block).map_err(|e| Error::UserFunctionError(Box::new(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize, seed: u64) -> Vec<Entry> {
        let mut x = seed;
        let mut next = || {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            x >> 20
        };
        let mut entries: Vec<Entry> = (0..n)
            .map(|_| {
                let start = 1_763_700_000_000_000_000 + (next() % 1_000_000_000) as i64;
                let block = 1 + (next() % 50_000) as i64;
                (start, block)
            })
            .collect();
        sort_entries(&mut entries);
        entries
    }

    /// Lists of every size round-trip, extreme values included, and `contains` finds each
    /// entry and no other.
    #[test]
    fn lists_round_trip_and_contain_their_entries() {
        for n in [0, 1, 2, 7, 300] {
            let entries = sample(n, n as u64);
            let bytes = encode(&entries);
            assert_eq!(decode(&bytes).unwrap(), entries, "{n}");
            for &(s, b) in &entries {
                assert!(contains(&bytes, s, b).unwrap());
                assert!(!contains(&bytes, s, b + 50_001).unwrap());
            }
        }
        let mut extremes = vec![
            (i64::MAX, i64::MAX),
            (i64::MAX, i64::MIN),
            (0, 0),
            (i64::MIN, i64::MAX),
            (i64::MIN, i64::MIN),
        ];
        sort_entries(&mut extremes);
        assert_eq!(decode(&encode(&extremes)).unwrap(), extremes);
        // Typical: a few bytes an entry.
        let entries = sample(3_000, 9);
        assert!(encode(&entries).len() < entries.len() * 8);
    }

    /// Every single-byte change (each byte set to several values) and every cut of an encoded
    /// list decodes to some entries or fails with an error; nothing panics, and a cut list
    /// never decodes to the whole list.
    #[test]
    fn damaged_lists_decode_or_fail_without_panicking() {
        let mut entries = sample(40, 3);
        entries.push((i64::MIN + 5, -3));
        let bytes = encode(&entries);
        for cut in 0..bytes.len() {
            let got = decode(&bytes[..cut]);
            assert_ne!(got.as_ref(), Ok(&entries), "cut at {cut}");
            let _ = contains(&bytes[..cut], entries[5].0, entries[5].1);
        }
        for at in 0..bytes.len() {
            for v in [0x00, 0x01, 0x7f, 0x80, 0xff, bytes[at] ^ 0x40] {
                let mut damaged = bytes.clone();
                damaged[at] = v;
                if let Ok(got) = decode(&damaged) {
                    assert!(got.len() <= damaged.len());
                }
                let _ = contains(&damaged, entries[3].0, entries[3].1);
            }
        }
        // A huge count with no entries behind it fails without allocating for the count.
        let mut huge = Vec::new();
        push_varint(&mut huge, u64::MAX);
        assert!(matches!(decode(&huge), Err(PostingError::Truncated { .. })));
        assert!(matches!(
            decode(&[0x80; 11]),
            Err(PostingError::Overlong { .. })
        ));
        assert!(matches!(
            decode(&[0, 1]),
            Err(PostingError::Trailing { extra: 1, .. })
        ));
    }

    /// The SQL function answers from a stored list; NULL arguments answer false; a damaged
    /// list is an error of the statement.
    #[test]
    fn the_sql_function_looks_entries_up() {
        let conn = Connection::open_in_memory().unwrap();
        register(&conn).unwrap();
        let entries = sample(20, 5);
        let bytes = encode(&entries);
        let has = |list: &[u8], s: Option<i64>, b: Option<i64>| {
            conn.query_row(
                "SELECT spanline_posting_has(?1, ?2, ?3)",
                rusqlite::params![list, s, b],
                |r| r.get::<_, bool>(0),
            )
        };
        assert!(has(&bytes, Some(entries[4].0), Some(entries[4].1)).unwrap());
        assert!(!has(&bytes, Some(entries[4].0), Some(-1)).unwrap());
        assert!(!has(&bytes, None, Some(entries[4].1)).unwrap());
        assert!(has(&[0x80], Some(1), Some(1)).is_err());
    }
}
