//! # Span blocks (schema 16)
//!
//! The spans of one trace within one ingested request are stored as ONE row of `span_blocks`
//! (`trace_id`, `span_count`, `origins`, `data`), encoded and compressed on the request's
//! thread ([`encode`]), never on the writer. `data` is a tag byte ([`TAG_LZ4`]), the
//! length of the raw block as a varint, then the raw block compressed with LZ4 (a block,
//! no frame). The raw block is columnar, so that what the spans of a trace share
//! (service, names, keys, scope) lies together for the compressor:
//!
//! ```text
//! varint n                                  spans
//! varint s, s x (varint len, UTF-8 bytes)   the distinct services and names
//! n x 8 bytes                               span ids
//! n x 1 byte                                kind | status << 3 | has_parent << 5
//! p x 8 bytes                               the parent ids of the spans that have one
//! n x varint                                service (index into the strings)
//! n x varint                                name (index into the strings)
//! n x varint                                origin (index into the row's `origins`)
//! varint base, n x varint                   start, unix ns: the block's earliest, then each
//!                                           span's offset from it
//! n x varint                                duration, ns
//! n x varint                                `SpanDetail` length (codec.rs)
//! the `SpanDetail` bytes, one after the other
//! ```
//!
//! `origins` (uncompressed, written by the writer) is the `resources.id` of each origin
//! index, as varints: a span's resource and scope are known on the request's thread only
//! by their `Arc`s, their ids only on the writer.

use prost::encoding::{decode_varint, encode_varint};
use rusqlite::Connection;

use super::{backend, map_sql};
use crate::model::TraceId;
use crate::store::StoreError;

/// Calls `each` with every stored block of `trace_id`, decoded, in no set order. Errors:
/// SQLite's, a damaged block ([`Block::decode`]), or what `each` returns.
pub(super) fn for_each_block(
    conn: &Connection,
    trace_id: TraceId,
    mut each: impl FnMut(&Block) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT data FROM span_blocks WHERE trace_id = ?1")
        .map_err(map_sql)?;
    let mut rows = stmt.query([&trace_id.0[..]]).map_err(map_sql)?;
    while let Some(row) = rows.next().map_err(map_sql)? {
        let data = row
            .get_ref(0)
            .map_err(map_sql)?
            .as_blob()
            .map_err(backend)?;
        each(&Block::decode(data)?)?;
    }
    Ok(())
}

/// The first byte of `span_blocks.data`: the raw block follows, LZ4-compressed. (0: the raw
/// block as it is.) LZ4 rather than zstd: on `loadgen`'s blocks zstd (level 1) is 16%
/// smaller (36.8 against 43.7 B/span) but takes 0.6 µs more CPU per span to compress and
/// three times as long to decompress (BENCHMARKS.md §3.1, "issue 14 (branch `blocks21`)").
pub(super) const TAG_LZ4: u8 = 1;

/// The largest raw block accepted on read (bytes): a bound on what a damaged length may
/// make the decoder allocate.
const MAX_RAW_BYTES: u64 = 256 << 20;

/// Version 14 → 15 (also run on a new file): the block table and the small table of the
/// spans of 100 ms or longer that the slow-span searches walk (`search.rs`,
/// `slow_walk.rs`), deleted by key from their trace's blocks (`retention.rs`). `IF NOT EXISTS`: the step is self-contained and can be renumbered.
pub(super) const SCHEMA_V15: &str = "
CREATE TABLE IF NOT EXISTS span_blocks (
    id INTEGER PRIMARY KEY,
    trace_id BLOB NOT NULL,
    span_count INTEGER NOT NULL,
    origins BLOB NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS span_blocks_by_trace ON span_blocks (trace_id);
CREATE TABLE IF NOT EXISTS slow_spans (
    trace_id BLOB NOT NULL,
    service TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    duration_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS slow_spans_by_duration ON slow_spans (service, duration_ns);
CREATE INDEX IF NOT EXISTS slow_spans_by_start ON slow_spans (service, start_ns, duration_ns);
";

/// The columns of one span to encode; its `SpanDetail` bytes go separately ([`encode`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct SpanColumns<'a> {
    /// The span id.
    pub span_id: [u8; 8],
    /// The parent's span id; `None` for a root.
    pub parent: Option<[u8; 8]>,
    /// OTLP kind number (0–5).
    pub kind: i32,
    /// OTLP status code (0–2).
    pub status: i32,
    /// The service name.
    pub service: &'a str,
    /// The span name.
    pub name: &'a str,
    /// The index of the span's resource and scope in the row's `origins`.
    pub origin: u32,
    /// Start, unix ns.
    pub start_ns: u64,
    /// Duration, ns.
    pub duration_ns: u64,
}

impl<'a> SpanColumns<'a> {
    /// The columns of `span`, whose resource and scope are origin `origin` of its block.
    pub(super) fn of(span: &'a crate::model::Span, origin: u32) -> Self {
        Self {
            span_id: span.span_id.0,
            parent: span.parent_span_id.map(|p| p.0),
            kind: span.kind.as_i32(),
            status: span.status.code.as_i32(),
            service: &span.service_name,
            name: &span.name,
            origin,
            start_ns: span.start_time_unix_nano,
            duration_ns: span.duration_ns(),
        }
    }
}

/// `spans` encoded and compressed as `span_blocks.data`; `details` holds their
/// `SpanDetail` bytes one after the other, `detail_lens` each one's length (bytes).
pub(super) fn encode(spans: &[SpanColumns<'_>], details: &[u8], detail_lens: &[usize]) -> Vec<u8> {
    compress(&encode_raw(spans, details, detail_lens))
}

/// The raw (uncompressed) block of `spans` (see [`encode`]).
fn encode_raw(spans: &[SpanColumns<'_>], details: &[u8], detail_lens: &[usize]) -> Vec<u8> {
    let mut raw = Vec::with_capacity(64 + spans.len() * 48 + details.len());
    let varint = |v: u64, out: &mut Vec<u8>| encode_varint(v, out);
    varint(spans.len() as u64, &mut raw);
    let mut strings: Vec<&str> = Vec::new();
    let mut service_idx = Vec::with_capacity(spans.len());
    let mut name_idx = Vec::with_capacity(spans.len());
    for span in spans {
        service_idx.push(string_index(&mut strings, span.service));
        name_idx.push(string_index(&mut strings, span.name));
    }
    varint(strings.len() as u64, &mut raw);
    for s in &strings {
        varint(s.len() as u64, &mut raw);
        raw.extend_from_slice(s.as_bytes());
    }
    for span in spans {
        raw.extend_from_slice(&span.span_id);
    }
    for span in spans {
        let kind = (span.kind.clamp(0, 7)) as u8;
        let status = (span.status.clamp(0, 3)) as u8;
        raw.push(kind | status << 3 | u8::from(span.parent.is_some()) << 5);
    }
    for parent in spans.iter().filter_map(|s| s.parent) {
        raw.extend_from_slice(&parent);
    }
    for i in service_idx.into_iter().chain(name_idx) {
        varint(i, &mut raw);
    }
    for span in spans {
        varint(u64::from(span.origin), &mut raw);
    }
    let base = spans.iter().map(|s| s.start_ns).min().unwrap_or(0);
    varint(base, &mut raw);
    for span in spans {
        varint(span.start_ns - base, &mut raw);
    }
    for span in spans {
        varint(span.duration_ns, &mut raw);
    }
    for len in detail_lens {
        varint(*len as u64, &mut raw);
    }
    raw.extend_from_slice(details);
    raw
}

/// The index of `s` in `strings`, added at the end if new. A trace names a few services and
/// operations: a linear search beats a map.
fn string_index<'a>(strings: &mut Vec<&'a str>, s: &'a str) -> u64 {
    match strings.iter().position(|have| *have == s) {
        Some(i) => i as u64,
        None => {
            strings.push(s);
            (strings.len() - 1) as u64
        }
    }
}

/// `raw` as `span_blocks.data`: [`TAG_LZ4`], its length, its LZ4 bytes.
fn compress(raw: &[u8]) -> Vec<u8> {
    let packed = lz4_flex::block::compress(raw);
    let mut out = Vec::with_capacity(packed.len() + 11);
    out.push(TAG_LZ4);
    encode_varint(raw.len() as u64, &mut out);
    out.extend_from_slice(&packed);
    out
}

/// The raw block of `span_blocks.data`.
fn decompress(data: &[u8]) -> Result<Vec<u8>, StoreError> {
    let (&tag, mut rest) = data
        .split_first()
        .ok_or_else(|| backend("empty span block"))?;
    let len = decode_varint(&mut rest).map_err(backend)?;
    if len > MAX_RAW_BYTES {
        return Err(backend(format!("span block of {len} bytes")));
    }
    let raw = match tag {
        0 => rest.to_vec(),
        TAG_LZ4 => lz4_flex::block::decompress(rest, len as usize).map_err(backend)?,
        other => return Err(backend(format!("span block with unknown tag {other}"))),
    };
    if raw.len() as u64 != len {
        return Err(backend("span block shorter than its length"));
    }
    Ok(raw)
}

/// One span of a decoded [`Block`].
#[derive(Debug, Clone)]
pub(super) struct BlockSpan {
    /// The span id.
    pub span_id: [u8; 8],
    /// The parent's span id; `None` for a root.
    pub parent: Option<[u8; 8]>,
    /// OTLP kind number.
    pub kind: i32,
    /// OTLP status code.
    pub status: i32,
    /// Index of the service among the block's strings ([`Block::string`]).
    pub service: usize,
    /// Index of the name among the block's strings ([`Block::string`]).
    pub name: usize,
    /// Index into the row's `origins`.
    pub origin: usize,
    /// Start, unix ns.
    pub start_ns: u64,
    /// Duration, ns.
    pub duration_ns: u64,
    /// Where its `SpanDetail` bytes are in [`Block::raw`].
    detail: std::ops::Range<usize>,
}

/// A decoded `span_blocks.data`: the spans' columns; the detail bytes stay in `raw`.
#[derive(Debug)]
pub(super) struct Block {
    raw: Vec<u8>,
    /// Where the distinct services and names are in `raw` (checked UTF-8).
    strings: Vec<std::ops::Range<usize>>,
    /// The spans, in the order they were encoded.
    pub spans: Vec<BlockSpan>,
}

/// A reader over a raw block that fails (never panics) at its end.
struct Cursor<'a> {
    raw: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.raw.len())
            .ok_or_else(|| backend("span block ends early"))?;
        let bytes = &self.raw[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn varint(&mut self) -> Result<u64, StoreError> {
        let mut rest = &self.raw[self.at..];
        let before = rest.len();
        let v = decode_varint(&mut rest).map_err(backend)?;
        self.at += before - rest.len();
        Ok(v)
    }

    fn index(&mut self, bound: usize) -> Result<usize, StoreError> {
        let v = self.varint()?;
        usize::try_from(v)
            .ok()
            .filter(|&i| i < bound)
            .ok_or_else(|| backend("span block index out of range"))
    }

    fn id(&mut self) -> Result<[u8; 8], StoreError> {
        super::codec::blob_array::<8>(self.take(8)?)
    }
}

impl Block {
    /// Decodes `span_blocks.data`. Errors: a damaged block, as [`StoreError::Backend`].
    pub(super) fn decode(data: &[u8]) -> Result<Self, StoreError> {
        let raw = decompress(data)?;
        let mut c = Cursor { raw: &raw, at: 0 };
        let n = c.varint()?;
        // Each span takes at least 15 bytes (id, flags, 5 one-byte varints).
        if n > (raw.len() / 15) as u64 + 1 {
            return Err(backend("span block counts more spans than it holds"));
        }
        let n = n as usize;
        let s = c.varint()?;
        if s > raw.len() as u64 {
            return Err(backend("span block counts more strings than it holds"));
        }
        let mut strings = Vec::with_capacity(s as usize);
        for _ in 0..s {
            let len = usize::try_from(c.varint()?).map_err(backend)?;
            let bytes = c.take(len)?;
            std::str::from_utf8(bytes).map_err(backend)?;
            strings.push(c.at - len..c.at);
        }
        let mut spans: Vec<BlockSpan> = Vec::with_capacity(n);
        for _ in 0..n {
            spans.push(BlockSpan {
                span_id: c.id()?,
                parent: None,
                kind: 0,
                status: 0,
                service: 0,
                name: 0,
                origin: 0,
                start_ns: 0,
                duration_ns: 0,
                detail: 0..0,
            });
        }
        let flags = c.take(n)?;
        for (span, &f) in spans.iter_mut().zip(flags) {
            span.kind = i32::from(f & 7);
            span.status = i32::from((f >> 3) & 3);
            span.parent = (f & 32 != 0).then_some([0; 8]);
        }
        for span in spans.iter_mut().filter(|s| s.parent.is_some()) {
            span.parent = Some(c.id()?);
        }
        for span in &mut spans {
            span.service = c.index(strings.len())?;
        }
        for span in &mut spans {
            span.name = c.index(strings.len())?;
        }
        for span in &mut spans {
            span.origin = c.index(usize::MAX)?;
        }
        let base = c.varint()?;
        for span in &mut spans {
            span.start_ns = base.saturating_add(c.varint()?);
        }
        for span in &mut spans {
            span.duration_ns = c.varint()?;
        }
        let mut lens = Vec::with_capacity(n);
        for _ in 0..n {
            lens.push(usize::try_from(c.varint()?).map_err(backend)?);
        }
        for (span, len) in spans.iter_mut().zip(lens) {
            let start = c.at;
            c.take(len)?;
            span.detail = start..c.at;
        }
        Ok(Self {
            raw,
            strings,
            spans,
        })
    }

    /// The `SpanDetail` bytes of `span` (one of [`Block::spans`]).
    pub(super) fn detail(&self, span: &BlockSpan) -> &[u8] {
        self.raw.get(span.detail.clone()).unwrap_or_default()
    }

    /// A service or name of the block by index ([`BlockSpan::service`], [`BlockSpan::name`];
    /// empty when out of range, which [`Block::decode`] rules out).
    pub(super) fn string(&self, idx: usize) -> &str {
        self.strings
            .get(idx)
            .and_then(|r| self.raw.get(r.clone()))
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or_default()
    }

    /// The index of `s` among the block's services and names, if the block names it (a
    /// search's service or name absent from a block rules out every span of it).
    pub(super) fn index_of(&self, s: &str) -> Option<usize> {
        (0..self.strings.len()).find(|&i| self.string(i) == s)
    }
}

/// `span_blocks.origins`: the varints of `ids`.
pub(super) fn encode_origins(ids: &[i64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ids.len() * 2);
    for &id in ids {
        encode_varint(u64::try_from(id).unwrap_or(0), &mut out);
    }
    out
}

/// The `resources.id`s of `span_blocks.origins`.
pub(super) fn decode_origins(bytes: &[u8]) -> Result<Vec<i64>, StoreError> {
    let mut rest = bytes;
    let mut ids = Vec::new();
    while !rest.is_empty() {
        let id = decode_varint(&mut rest).map_err(backend)?;
        ids.push(i64::try_from(id).map_err(backend)?);
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(i: u8) -> SpanColumns<'static> {
        SpanColumns {
            span_id: [i; 8],
            parent: (i % 2 == 1).then_some([i + 100; 8]),
            kind: i32::from(i % 6),
            status: i32::from(i % 3),
            service: if i < 2 { "front" } else { "back" },
            name: ["GET /", "SELECT", "charge"][usize::from(i % 3)],
            origin: u32::from(i % 2),
            start_ns: 1_700_000_000_000_000_000 + u64::from(i) * 1000,
            duration_ns: 250_000 + u64::from(i),
        }
    }

    /// Every column comes back as encoded, in order, with each span's own detail bytes.
    #[test]
    fn a_block_decodes_to_what_was_encoded() {
        let spans: Vec<_> = (0..5).map(columns).collect();
        let details: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; usize::from(i) * 3]).collect();
        let lens: Vec<usize> = details.iter().map(Vec::len).collect();
        let data = encode(&spans, &details.concat(), &lens);
        assert_eq!(data[0], TAG_LZ4);
        let block = Block::decode(&data).unwrap();
        assert_eq!(block.spans.len(), 5);
        for ((got, want), detail) in block.spans.iter().zip(&spans).zip(&details) {
            assert_eq!(got.span_id, want.span_id);
            assert_eq!(got.parent, want.parent);
            assert_eq!((got.kind, got.status), (want.kind, want.status));
            assert_eq!(block.string(got.service), want.service);
            assert_eq!(block.string(got.name), want.name);
            assert_eq!(got.origin, want.origin as usize);
            assert_eq!(
                (got.start_ns, got.duration_ns),
                (want.start_ns, want.duration_ns)
            );
            assert_eq!(block.detail(got), &detail[..]);
        }
        assert_eq!(
            block.strings.len(),
            5,
            "front, back and three names, once each"
        );
    }

    /// A damaged block is an error, never a panic.
    #[test]
    fn damaged_blocks_are_errors() {
        let spans: Vec<_> = (0..3).map(columns).collect();
        let data = encode(&spans, &[1, 2, 3], &[1, 1, 1]);
        assert!(Block::decode(&[]).is_err());
        assert!(Block::decode(&[9, 1, 0]).is_err());
        for cut in 1..data.len() {
            assert!(Block::decode(&data[..cut]).is_err(), "cut at {cut}");
        }
        let mut raw_lie = data.clone();
        raw_lie[1] = raw_lie[1].wrapping_add(1);
        assert!(Block::decode(&raw_lie).is_err());
        assert_eq!(
            decode_origins(&encode_origins(&[1, 300, 70000])).unwrap(),
            vec![1, 300, 70000]
        );
    }

    /// Every byte of an uncompressed block (tag 0) changed to each of a few values, and every
    /// cut of it: decoding answers, never panics, and a block that decodes reads its strings
    /// and details without panicking either.
    #[test]
    fn mutated_blocks_never_panic() {
        let spans: Vec<_> = (0..4).map(columns).collect();
        let raw = encode_raw(&spans, &[1, 2, 3, 4, 5, 6], &[1, 2, 0, 3]);
        let mut stored = vec![0u8];
        encode_varint(raw.len() as u64, &mut stored);
        let header = stored.len();
        stored.extend_from_slice(&raw);
        assert!(Block::decode(&stored).is_ok());
        let read_all = |data: &[u8]| {
            if let Ok(block) = Block::decode(data) {
                for span in &block.spans {
                    let _ = (block.string(span.service), block.string(span.name));
                    let _ = block.detail(span);
                }
            }
        };
        for at in header..stored.len() {
            for value in [0u8, 1, 2, 0x7f, 0x80, 0xff, stored[at] ^ 0x20] {
                let mut data = stored.clone();
                data[at] = value;
                read_all(&data);
            }
        }
        for cut in 0..raw.len() {
            let mut data = vec![0u8];
            encode_varint(cut as u64, &mut data);
            data.extend_from_slice(&raw[..cut]);
            read_all(&data);
        }
    }

    /// LZ4 against zstd (levels 1 and 3) on the blocks of `loadgen`'s requests (500 spans,
    /// 50 traces of 10 spans each): bytes per span and CPU per block. Prints; asserts only
    /// that each codec reads back what it wrote. `cargo test --release -p collector --lib
    /// block_codecs_compared -- --ignored --nocapture`
    #[test]
    #[ignore = "a measurement, run by hand"]
    fn block_codecs_compared() {
        use std::time::Instant;

        use prost::Message;

        use crate::model::Span;
        let mut raws: Vec<(usize, Vec<u8>)> = Vec::new();
        for n in 0..40 {
            let body = loadgen::numbered_request(n, 500).encode_to_vec();
            let spans: Vec<Span> = crate::format::fuzzing::otlp_proto_spans(&body);
            let mut traces: std::collections::BTreeMap<_, Vec<&Span>> = Default::default();
            for span in &spans {
                traces.entry(span.trace_id).or_default().push(span);
            }
            for spans in traces.values() {
                let mut details = Vec::new();
                let mut lens = Vec::new();
                let columns: Vec<SpanColumns<'_>> = spans
                    .iter()
                    .map(|span| {
                        let before = details.len();
                        crate::store::detail::SpanDetail::encode_into(span, &mut details);
                        lens.push(details.len() - before);
                        SpanColumns::of(span, 0)
                    })
                    .collect();
                raws.push((spans.len(), encode_raw(&columns, &details, &lens)));
            }
        }
        let spans: usize = raws.iter().map(|r| r.0).sum();
        let raw_bytes: usize = raws.iter().map(|r| r.1.len()).sum();
        println!(
            "{} blocks, {spans} spans, raw {:.1} B/span",
            raws.len(),
            raw_bytes as f64 / spans as f64
        );
        type Codec = (
            &'static str,
            fn(&[u8]) -> Vec<u8>,
            fn(&[u8], usize) -> Vec<u8>,
        );
        type Contexts = (
            zstd::bulk::Compressor<'static>,
            zstd::bulk::Decompressor<'static>,
        );
        thread_local! {
            static ZSTD: std::cell::RefCell<Contexts> = std::cell::RefCell::new((
                zstd::bulk::Compressor::new(1).unwrap(),
                zstd::bulk::Decompressor::new().unwrap(),
            ));
        }
        let codecs: [Codec; 5] = [
            (
                "lz4 (as stored: with the tag and length)",
                |r| compress(r),
                |c, _| decompress(c).unwrap(),
            ),
            (
                "zstd-1 (one context per thread)",
                |r| ZSTD.with(|z| z.borrow_mut().0.compress(r).unwrap()),
                |c, n| ZSTD.with(|z| z.borrow_mut().1.decompress(c, n).unwrap()),
            ),
            (
                "zstd-1 (a new context per block)",
                |r| zstd::bulk::compress(r, 1).unwrap(),
                |c, n| zstd::bulk::decompress(c, n).unwrap(),
            ),
            (
                "zstd-3 (a new context per block)",
                |r| zstd::bulk::compress(r, 3).unwrap(),
                |c, n| zstd::bulk::decompress(c, n).unwrap(),
            ),
            (
                "lz4 (the block alone)",
                |r| lz4_flex::block::compress(r),
                |c, n| lz4_flex::block::decompress(c, n).unwrap(),
            ),
        ];
        for (name, pack, unpack) in codecs {
            let start = Instant::now();
            let packed: Vec<Vec<u8>> = raws.iter().map(|r| pack(&r.1)).collect();
            let pack_ns = start.elapsed().as_nanos() as f64;
            let start = Instant::now();
            for (p, r) in packed.iter().zip(&raws) {
                assert_eq!(unpack(p, r.1.len()), r.1);
            }
            let unpack_ns = start.elapsed().as_nanos() as f64;
            let bytes: usize = packed.iter().map(Vec::len).sum();
            println!(
                "{name}: {:.1} B/span (ratio {:.2}), compress {:.2} µs/block {:.3} µs/span, \
                 decompress+compare {:.2} µs/block",
                bytes as f64 / spans as f64,
                raw_bytes as f64 / bytes as f64,
                pack_ns / 1000.0 / raws.len() as f64,
                pack_ns / 1000.0 / spans as f64,
                unpack_ns / 1000.0 / raws.len() as f64,
            );
        }
    }
}
