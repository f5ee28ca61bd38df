//! Response bodies written piece by piece (issue 16 item 2: reads with bounded memory).
//!
//! A large answer (the spans of a trace, its tree, a Jaeger trace) is never built whole as a
//! `serde_json::Value` or `String`: a [`Pieces`] writer appends the next piece (one span, one
//! tree node) to a buffer, and [`chunked_body`] sends the buffer whenever it holds
//! [`CHUNK_BYTES`]. Hyper asks for the next chunk only when the socket took the previous
//! one, so the answer costs one chunk plus what the pieces are made from, whatever its size.
//! Such answers go out with `Transfer-Encoding: chunked`.

use std::convert::Infallible;

use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;

/// Bytes gathered before a chunk is sent: 64 KiB.
pub(crate) const CHUNK_BYTES: usize = 64 * 1024;

/// Writes an answer piece by piece: each call appends the next piece to `out` and returns
/// `true`, or returns `false` when the answer is complete (appending its end first).
pub(crate) trait Pieces: Send + 'static {
    /// Appends the next piece; `false` when nothing is left.
    fn next_piece(&mut self, out: &mut Vec<u8>) -> bool;
}

impl<F: FnMut(&mut Vec<u8>) -> bool + Send + 'static> Pieces for F {
    fn next_piece(&mut self, out: &mut Vec<u8>) -> bool {
        self(out)
    }
}

/// A body that sends what `pieces` writes, in chunks of about [`CHUNK_BYTES`].
pub(crate) fn chunked_body(pieces: impl Pieces) -> Body {
    let mut pieces = Some(pieces);
    let chunks = std::iter::from_fn(move || {
        let writer = pieces.as_mut()?;
        let mut buf = Vec::with_capacity(CHUNK_BYTES + CHUNK_BYTES / 4);
        while buf.len() < CHUNK_BYTES {
            if !writer.next_piece(&mut buf) {
                pieces = None;
                break;
            }
        }
        (!buf.is_empty()).then(|| Ok::<_, Infallible>(Bytes::from(buf)))
    });
    Body::from_stream(futures_util::stream::iter(chunks))
}

/// A `200` JSON answer whose body `pieces` writes.
pub(crate) fn json_response(pieces: impl Pieces) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        chunked_body(pieces),
    )
        .into_response()
}

/// Appends `value` as compact JSON (serializing into a `Vec` cannot fail for the
/// collector's types; a value that did would be written as `null`).
pub(crate) fn write_json(out: &mut Vec<u8>, value: &(impl Serialize + ?Sized)) {
    let mark = out.len();
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.truncate(mark);
        out.extend_from_slice(b"null");
    }
}

/// Writes the end of a [`JsonArray`] answer.
type Suffix = Box<dyn FnOnce(&mut Vec<u8>) + Send>;

/// Writes `prefix`, then `items` as a JSON array's elements (each written by `write`), then
/// `suffix`: the shape of every streamed answer (`{"...":..., "spans": [` items `], ...}`).
pub(crate) struct JsonArray<T, W> {
    prefix: Option<Vec<u8>>,
    items: T,
    write: W,
    first: bool,
    suffix: Option<Suffix>,
}

impl<T, W> JsonArray<T, W>
where
    T: Iterator + Send + 'static,
    W: FnMut(T::Item, &mut Vec<u8>) + Send + 'static,
{
    /// See the type docs; `prefix` must end with `[`, `suffix` start with `]`.
    pub(crate) fn new(
        prefix: Vec<u8>,
        items: T,
        write: W,
        suffix: impl FnOnce(&mut Vec<u8>) + Send + 'static,
    ) -> Self {
        Self {
            prefix: Some(prefix),
            items,
            write,
            first: true,
            suffix: Some(Box::new(suffix)),
        }
    }
}

impl<T, W> Pieces for JsonArray<T, W>
where
    T: Iterator + Send + 'static,
    W: FnMut(T::Item, &mut Vec<u8>) + Send + 'static,
{
    fn next_piece(&mut self, out: &mut Vec<u8>) -> bool {
        if let Some(prefix) = self.prefix.take() {
            out.extend_from_slice(&prefix);
            return true;
        }
        match self.items.next() {
            Some(item) => {
                if !std::mem::take(&mut self.first) {
                    out.push(b',');
                }
                (self.write)(item, out);
                true
            }
            None => {
                if let Some(suffix) = self.suffix.take() {
                    suffix(out);
                }
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_json_array_streams_in_chunks_and_parses_whole() {
        let items = (0..20_000u32).map(|n| format!("item number {n}"));
        let pieces = JsonArray::new(
            b"{\"a\":1,\"items\":[".to_vec(),
            items,
            |s: String, out: &mut Vec<u8>| write_json(out, &s),
            |out: &mut Vec<u8>| out.extend_from_slice(b"],\"z\":2}"),
        );
        let mut body = chunked_body(pieces);
        let mut whole = Vec::new();
        let mut chunks = 0;
        while let Some(frame) = body.frame().await {
            let data = frame.unwrap().into_data().unwrap();
            assert!(data.len() < 2 * CHUNK_BYTES, "chunk of {}", data.len());
            whole.extend_from_slice(&data);
            chunks += 1;
        }
        assert!(chunks > 3, "{chunks} chunks");
        let v: serde_json::Value = serde_json::from_slice(&whole).unwrap();
        assert_eq!(v["items"].as_array().unwrap().len(), 20_000);
        assert_eq!(v["items"][19_999], "item number 19999");
        assert_eq!((v["a"].as_i64(), v["z"].as_i64()), (Some(1), Some(2)));
    }

    #[tokio::test]
    async fn an_empty_array_is_valid_json() {
        let pieces = JsonArray::new(
            b"[".to_vec(),
            std::iter::empty::<u8>(),
            |n: u8, out: &mut Vec<u8>| write_json(out, &n),
            |out: &mut Vec<u8>| out.push(b']'),
        );
        let bytes = chunked_body(pieces).collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"[]");
    }
}
