//! The hand-written decoder against the prost-based one it replaced (`super::reference`):
//! the same `Result<Decoded, Error>`, compared through its full `Debug` text (spans,
//! rejections, messages, the error's wording), on generated requests: every field kind, in
//! random order and repeated, unknown fields and groups, invalid UTF-8, bad ids, oneofs
//! switching kind, nested arrays and kvlists up to and past the recursion limit, wrong wire
//! types, every truncation of a small request, and random byte changes.

use super::{decode, reference};
use crate::sanitize::SpanLimits;

/// Protobuf writing, by hand, so that the tests can write what no well-behaved encoder writes.
mod pb {
    pub(super) fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    pub(super) fn key(out: &mut Vec<u8>, tag: u32, wire_type: u8) {
        varint(out, (u64::from(tag) << 3) | u64::from(wire_type));
    }

    pub(super) fn bytes(out: &mut Vec<u8>, tag: u32, value: &[u8]) {
        key(out, tag, 2);
        varint(out, value.len() as u64);
        out.extend_from_slice(value);
    }

    pub(super) fn message(out: &mut Vec<u8>, tag: u32, body: impl FnOnce(&mut Vec<u8>)) {
        let mut inner = Vec::new();
        body(&mut inner);
        bytes(out, tag, &inner);
    }

    pub(super) fn uint(out: &mut Vec<u8>, tag: u32, value: u64) {
        key(out, tag, 0);
        varint(out, value);
    }

    pub(super) fn fixed64(out: &mut Vec<u8>, tag: u32, value: u64) {
        key(out, tag, 1);
        out.extend_from_slice(&value.to_le_bytes());
    }

    pub(super) fn fixed32(out: &mut Vec<u8>, tag: u32, value: u32) {
        key(out, tag, 5);
        out.extend_from_slice(&value.to_le_bytes());
    }
}

/// Writes one field (or several occurrences of one) of a message.
type Writer<'w> = &'w mut dyn FnMut(&mut Gen, &mut Vec<u8>);

/// Random requests from one seed.
struct Gen {
    rng: fastrand::Rng,
    /// Out of 1000: how often a field gets the wrong wire type (makes most requests fail).
    wrong_wire_type_permille: u32,
    /// Short strings and few attributes: requests small enough to cut at every byte.
    small: bool,
}

impl Gen {
    fn chance(&mut self, permille: u32) -> bool {
        self.rng.u32(0..1000) < permille
    }

    /// How many times a field is written: mostly once, sometimes not or twice.
    fn times(&mut self) -> usize {
        match self.rng.u32(0..10) {
            0 => 0,
            1 => 2,
            _ => 1,
        }
    }

    fn text(&mut self) -> Vec<u8> {
        match self.rng.u32(0..12) {
            0 => Vec::new(),
            1 => b"  ".to_vec(),
            2 => vec![0xff, 0xfe],
            3 => b"caf\xc3".to_vec(),
            4 if !self.small => "é".repeat(self.rng.usize(1..700)).into_bytes(),
            5 => [b"ok".as_slice(), &[0xed, 0xa0, 0x80], b"end"].concat(),
            6 => b"service.name".to_vec(),
            _ => format!("s{}", self.rng.u32(0..50)).into_bytes(),
        }
    }

    fn id(&mut self, len: usize) -> Vec<u8> {
        match self.rng.u32(0..14) {
            0 => Vec::new(),
            1 => vec![0; len],
            2 => vec![7; len - 1],
            3 => vec![7; len + 1],
            4 => vec![9; 40],
            _ => (0..len).map(|_| self.rng.u8(..)).collect(),
        }
    }

    /// A string (bytes) field, or now and then one with another wire type.
    fn text_field(&mut self, out: &mut Vec<u8>, tag: u32) {
        if self.chance(self.wrong_wire_type_permille) {
            pb::uint(out, tag, 1);
        } else {
            let value = self.text();
            pb::bytes(out, tag, &value);
        }
    }

    fn unknown_field(&mut self, out: &mut Vec<u8>) {
        let tag = self.rng.u32(17..40);
        match self.rng.u32(0..5) {
            0 => pb::uint(out, tag, self.rng.u64(..)),
            1 => pb::fixed64(out, tag, 1),
            2 => pb::fixed32(out, tag, 1),
            3 => pb::bytes(out, tag, b"skip me"),
            _ => {
                pb::key(out, tag, 3);
                pb::uint(out, 1, 5);
                pb::key(out, tag, 4);
            }
        }
    }

    /// Writes the fields in random order, each as many times as it says, with unknown
    /// fields among them now and then.
    fn fields(&mut self, out: &mut Vec<u8>, writers: &mut [Writer<'_>]) {
        let mut order: Vec<usize> = (0..writers.len()).collect();
        if self.chance(300) {
            self.rng.shuffle(&mut order);
        }
        for i in order {
            for _ in 0..self.times() {
                writers[i](self, out);
            }
            if self.chance(50) {
                self.unknown_field(out);
            }
        }
    }

    fn any_value(&mut self, out: &mut Vec<u8>, depth: usize) {
        for _ in 0..self.rng.usize(0..3) {
            match self.rng.u32(0..if depth == 0 { 5 } else { 7 }) {
                0 => self.text_field(out, 1),
                1 => pb::uint(out, 2, self.rng.u64(0..3)),
                2 => pb::uint(out, 3, self.rng.u64(..)),
                3 => pb::fixed64(out, 4, self.rng.u64(..)),
                4 => pb::bytes(out, 7, &self.text()),
                5 => pb::message(out, 5, |out| {
                    for _ in 0..self.rng.usize(0..4) {
                        pb::message(out, 1, |out| self.any_value(out, depth - 1));
                    }
                }),
                _ => pb::message(out, 6, |out| {
                    for _ in 0..self.rng.usize(0..3) {
                        pb::message(out, 1, |out| self.key_value(out, depth - 1));
                    }
                }),
            }
        }
    }

    fn key_value(&mut self, out: &mut Vec<u8>, depth: usize) {
        self.fields(
            out,
            &mut [&mut |g, out| g.text_field(out, 1), &mut |g, out| {
                pb::message(out, 2, |out| g.any_value(out, depth))
            }],
        );
    }

    fn attributes(&mut self, out: &mut Vec<u8>, tag: u32) {
        let n = if self.chance(20) {
            130
        } else {
            self.rng.usize(0..5)
        };
        for _ in 0..n {
            pb::message(out, tag, |out| self.key_value(out, 2));
        }
    }

    fn span(&mut self, out: &mut Vec<u8>) {
        let start = match self.rng.u32(0..6) {
            0 => 0,
            1 => u64::MAX - 5,
            _ => 1_700_000_000_000_000_000 + self.rng.u64(0..1_000_000),
        };
        self.fields(
            out,
            &mut [
                &mut |g, out| pb::bytes(out, 1, &g.id(16)),
                &mut |g, out| pb::bytes(out, 2, &g.id(8)),
                &mut |g, out| g.text_field(out, 3),
                &mut |g, out| {
                    let parent = if g.chance(500) { Vec::new() } else { g.id(8) };
                    pb::bytes(out, 4, &parent);
                },
                &mut |g, out| g.text_field(out, 5),
                &mut |g, out| pb::uint(out, 6, g.rng.u64(0..8).wrapping_sub(1)),
                &mut |_, out| pb::fixed64(out, 7, start),
                &mut |g, out| {
                    pb::fixed64(
                        out,
                        8,
                        start.wrapping_add(g.rng.u64(0..1000)).wrapping_sub(100),
                    )
                },
                &mut |g, out| g.attributes(out, 9),
                &mut |g, out| pb::uint(out, 10, g.rng.u64(..)),
                &mut |g, out| {
                    for _ in 0..g.rng.usize(0..3) {
                        pb::message(out, 11, |out| {
                            g.fields(
                                out,
                                &mut [
                                    &mut |g, out| pb::fixed64(out, 1, g.rng.u64(..)),
                                    &mut |g, out| g.text_field(out, 2),
                                    &mut |g, out| g.attributes(out, 3),
                                ],
                            );
                        });
                    }
                },
                &mut |g, out| pb::uint(out, 12, g.rng.u64(0..300)),
                &mut |g, out| {
                    for _ in 0..g.rng.usize(0..3) {
                        pb::message(out, 13, |out| {
                            g.fields(
                                out,
                                &mut [
                                    &mut |g, out| pb::bytes(out, 1, &g.id(16)),
                                    &mut |g, out| pb::bytes(out, 2, &g.id(8)),
                                    &mut |g, out| g.text_field(out, 3),
                                    &mut |g, out| g.attributes(out, 4),
                                ],
                            );
                        });
                    }
                },
                &mut |g, out| pb::uint(out, 14, u64::from(g.rng.u32(..))),
                &mut |g, out| {
                    pb::message(out, 15, |out| {
                        g.fields(
                            out,
                            &mut [&mut |g, out| g.text_field(out, 2), &mut |g, out| {
                                pb::uint(out, 3, g.rng.u64(0..4))
                            }],
                        );
                    });
                },
                &mut |g, out| pb::fixed32(out, 16, g.rng.u32(..)),
            ],
        );
    }

    fn request(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..self.rng.usize(0..3) {
            pb::message(&mut out, 1, |out| {
                self.fields(
                    out,
                    &mut [
                        &mut |g, out| pb::message(out, 1, |out| g.attributes(out, 1)),
                        &mut |g, out| {
                            for _ in 0..g.rng.usize(0..3) {
                                pb::message(out, 2, |out| {
                                    g.fields(
                                        out,
                                        &mut [
                                            &mut |g, out| {
                                                pb::message(out, 1, |out| {
                                                    g.fields(
                                                        out,
                                                        &mut [
                                                            &mut |g, out| g.text_field(out, 1),
                                                            &mut |g, out| g.text_field(out, 2),
                                                        ],
                                                    );
                                                });
                                            },
                                            &mut |g, out| {
                                                for _ in 0..g.rng.usize(0..5) {
                                                    pb::message(out, 2, |out| g.span(out));
                                                }
                                            },
                                        ],
                                    );
                                });
                            }
                        },
                    ],
                );
            });
        }
        out
    }
}

/// Both decoders' answers, as text.
fn both(body: &[u8], limits: &SpanLimits) -> (String, String) {
    (
        format!("{:?}", decode(body, limits)),
        format!("{:?}", reference::decode(body, limits)),
    )
}

fn assert_same(body: &[u8], limits: &SpanLimits, what: &str) {
    let (ours, reference) = both(body, limits);
    assert_eq!(ours, reference, "{what}: {body:02x?}");
}

fn small_limits() -> SpanLimits {
    SpanLimits {
        max_name_bytes: 5,
        max_attribute_value_bytes: 7,
        max_attributes: 3,
        max_events: 1,
        max_links: 1,
    }
}

#[test]
fn generated_requests_decode_as_the_reference_does() {
    let mut ok = 0;
    for seed in 0..3000u64 {
        let mut g = Gen {
            rng: fastrand::Rng::with_seed(seed),
            wrong_wire_type_permille: if seed % 5 == 0 { 10 } else { 0 },
            small: false,
        };
        let body = g.request();
        let limits = if seed % 3 == 0 {
            small_limits()
        } else {
            SpanLimits::default()
        };
        assert_same(&body, &limits, &format!("seed {seed}"));
        ok += usize::from(decode(&body, &limits).is_ok());
    }
    // Most requests must decode, or the comparison would mostly be of errors.
    eprintln!("ok {ok}");
    assert!(ok > 2000, "{ok} of 3000 decoded");
}

#[test]
fn every_truncation_and_byte_change_fails_or_decodes_as_the_reference_does() {
    let limits = SpanLimits::default();
    let (mut cuts, mut decoded) = (0, 0);
    for seed in 0..100u64 {
        let mut g = Gen {
            rng: fastrand::Rng::with_seed(1_000_000 + seed),
            wrong_wire_type_permille: 0,
            small: true,
        };
        let body = g.request();
        if body.len() > 2000 {
            continue;
        }
        for cut in 0..body.len() {
            assert_same(&body[..cut], &limits, &format!("seed {seed}, cut {cut}"));
            cuts += 1;
        }
        for _ in 0..300 {
            let mut changed = body.clone();
            if changed.is_empty() {
                break;
            }
            for _ in 0..g.rng.usize(1..4) {
                let i = g.rng.usize(..changed.len());
                changed[i] = match g.rng.u32(0..3) {
                    0 => g.rng.u8(..),
                    1 => changed[i] ^ (1 << g.rng.u32(0..8)),
                    _ => 0xff,
                };
            }
            assert_same(&changed, &limits, &format!("seed {seed}, changed"));
            decoded += usize::from(decode(&changed, &limits).is_ok());
        }
    }
    eprintln!("cuts {cuts} decoded {decoded}");
    assert!(cuts > 20_000, "only {cuts} truncations compared");
}

/// A span whose single attribute nests `levels` arrays (or kvlists) deep, with an unknown
/// field first in every message (skipping one also spends the recursion budget).
fn nested(levels: usize, kvlist: bool) -> Vec<u8> {
    fn value(out: &mut Vec<u8>, levels: usize, kvlist: bool) {
        pb::uint(out, 99, 1);
        if levels == 0 {
            pb::bytes(out, 1, b"leaf");
        } else if kvlist {
            pb::message(out, 6, |out| {
                pb::uint(out, 99, 1);
                pb::message(out, 1, |out| {
                    pb::uint(out, 99, 1);
                    pb::bytes(out, 1, b"k");
                    pb::message(out, 2, |out| value(out, levels - 1, kvlist));
                });
            });
        } else {
            pb::message(out, 5, |out| {
                pb::uint(out, 99, 1);
                pb::message(out, 1, |out| value(out, levels - 1, kvlist));
            });
        }
    }
    let mut out = Vec::new();
    pb::message(&mut out, 1, |out| {
        pb::message(out, 2, |out| {
            pb::message(out, 2, |out| {
                pb::bytes(out, 1, &[1; 16]);
                pb::bytes(out, 2, &[2; 8]);
                pb::message(out, 9, |out| {
                    pb::bytes(out, 1, b"deep");
                    pb::message(out, 2, |out| value(out, levels, kvlist));
                });
            });
        });
    });
    out
}

#[test]
fn nesting_fails_at_the_same_depth_with_the_same_message() {
    let limits = SpanLimits::default();
    let mut failed = 0;
    for levels in 0..110 {
        for kvlist in [false, true] {
            let body = nested(levels, kvlist);
            assert_same(&body, &limits, &format!("{levels} levels, kvlist {kvlist}"));
            failed += usize::from(decode(&body, &limits).is_err());
        }
    }
    assert!(failed > 0, "the recursion limit was never reached");
}

#[test]
fn the_load_generators_request_decodes_as_the_reference_does() {
    use prost::Message;
    let spans = (0..500)
        .map(|i| {
            let mut trace_id = [0u8; 16];
            trace_id[8..].copy_from_slice(&(i as u64 / 10 + 1).to_be_bytes());
            loadgen::span(
                i,
                trace_id,
                (i as u64 + 1).to_be_bytes(),
                1_763_700_000_000_000_000,
            )
        })
        .collect();
    let body = loadgen::request(3, spans).encode_to_vec();
    assert_same(&body, &SpanLimits::default(), "loadgen");
    assert_eq!(
        decode(&body, &SpanLimits::default()).unwrap().spans.len(),
        500
    );
}

/// Every file of `dir`, decoded by both.
fn assert_same_on_files(dir: &std::path::Path) -> usize {
    let mut files = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let body = std::fs::read(&path).unwrap();
        assert_same(&body, &SpanLimits::default(), &path.display().to_string());
        files += 1;
    }
    files
}

#[test]
fn the_fuzz_seeds_decode_as_the_reference_does() {
    let seeds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/otlp_proto");
    assert!(assert_same_on_files(&seeds) > 0);
}

/// `OTLP_PROTO_CORPUS=<dir>`: a fuzz target's corpus (inputs chosen for the decoder's
/// coverage), compared file by file.
#[test]
#[ignore = "needs OTLP_PROTO_CORPUS, a directory of inputs such as a fuzz corpus"]
fn a_fuzz_corpus_decodes_as_the_reference_does() {
    let dir = std::env::var("OTLP_PROTO_CORPUS").expect("OTLP_PROTO_CORPUS");
    assert!(assert_same_on_files(std::path::Path::new(&dir)) > 0);
}
