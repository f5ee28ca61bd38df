//! # A request's attribute-index entries, worked out before it is queued
//!
//! The writer thread is the store's bottleneck. Turning each span's attributes into
//! attribute-index entries (which attributes are indexed, their value text, hashing and
//! deduplicating the (key, value) pairs per trace) was most of the writer's own code in
//! `GroupIndex::flush` (BENCHMARKS.md §3.1, "2026-12-04, second session"). [`AttrPlan`] does
//! that work on the request's thread, when the request is prepared (`spans.rs`): each
//! distinct (key, value) pair of the request, with its hash and the request's traces that
//! have it. At flush the writer only looks each pair up once per request (by the hash
//! computed here, [`PairKey`]) and adds its traces' rows.
//!
//! A plan describes every span of its request, so the writer uses it only when the request
//! stored all its spans (no duplicate, none refused at the per-trace limit); otherwise it
//! reads the attributes of the spans it stored itself, with the same [`PairKey`]s.

use std::borrow::Cow;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};

use crate::fast_hash::FastHashMap as HashMap;
use crate::model::{Span, TraceId};
use crate::store::attr_index_text;

use super::options::AttributeIndex;

/// The hasher of (key, value) pairs, shared by the request threads and the writer so both
/// compute the same [`PairKey::hash`] (foldhash, seeded once per store).
pub(super) type PairHashState = foldhash::fast::RandomState;

/// One attribute-index pair (key, value text) with its hash under a [`PairHashState`]; hashed
/// as that value only, compared by its strings.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct PairKey<'a> {
    // Field order: `Ord` sorts by key, then value (the hash last breaks no ties: equal
    // strings have equal hashes).
    pub key: &'a str,
    pub value: Cow<'a, str>,
    pub hash: u64,
}

impl<'a> PairKey<'a> {
    /// The pair (`key`, `value`), hashed with `state`.
    pub(super) fn new(state: &PairHashState, key: &'a str, value: Cow<'a, str>) -> Self {
        let hash = state.hash_one((key, value.as_ref()));
        Self { key, value, hash }
    }
}

impl Hash for PairKey<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// A [`Hasher`] that passes a [`PairKey`]'s precomputed hash through.
#[derive(Default)]
pub(super) struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not reached through `PairKey` (which writes one u64); folds other input anyway.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A hash map keyed by [`PairKey`], on the keys' own hashes.
pub(super) type PairMap<'a, V> =
    std::collections::HashMap<PairKey<'a>, V, BuildHasherDefault<PassThrough>>;

/// One distinct (key, value text) pair of a request: where its first occurrence is, so the
/// key and (for strings and bools) the value text are borrowed from the request's spans.
#[derive(Debug)]
struct PlannedPair {
    /// Index of the span, then of the attribute, the pair was first seen at.
    span: u32,
    attr: u32,
    /// The value text when [`attr_index_text`] had to make it (ints, doubles).
    text: Option<String>,
    /// [`PairKey::hash`] of the pair.
    hash: u64,
}

/// A request's attribute-index entries: its traces, its distinct (key, value) pairs, and
/// which traces have which pair.
#[derive(Debug, Default)]
pub(super) struct AttrPlan {
    /// The request's traces, in the order their first span came.
    pub traces: Vec<TraceId>,
    pairs: Vec<PlannedPair>,
    /// `pair << 32 | trace` (indices into `pairs` and `traces`), ascending and distinct.
    entries: Vec<u64>,
}

impl AttrPlan {
    /// The plan of `spans`: the attributes `which` selects, pairs hashed with `state`.
    pub(super) fn new(spans: &[Span], which: &AttributeIndex, state: &PairHashState) -> Self {
        let mut plan = Self::default();
        if *which == AttributeIndex::None {
            return plan;
        }
        let attributes: usize = spans.iter().map(|s| s.attributes.len()).sum();
        let mut trace_index: HashMap<TraceId, u32> =
            HashMap::with_capacity_and_hasher(spans.len(), Default::default());
        let mut pair_index: PairMap<'_, u32> =
            PairMap::with_capacity_and_hasher(spans.len(), Default::default());
        // (pair, trace) in the order met; per pair, how many and the last trace pushed (a
        // pair met again in the same trace's next span is not pushed twice).
        let mut met: Vec<(u32, u32)> = Vec::with_capacity(attributes);
        let mut per_pair: Vec<(u32, u32)> = Vec::new();
        let index = |i: usize| u32::try_from(i).unwrap_or(u32::MAX);
        for (s, span) in spans.iter().enumerate() {
            let next = index(plan.traces.len());
            let trace = *trace_index.entry(span.trace_id).or_insert_with(|| {
                plan.traces.push(span.trace_id);
                next
            });
            for (a, kv) in span.attributes.iter().enumerate() {
                if !which.wants(&kv.key) {
                    continue;
                }
                let Some(text) = attr_index_text(&kv.value) else {
                    continue;
                };
                let key = PairKey::new(state, &kv.key, text);
                let pair = match pair_index.get(&key) {
                    Some(&p) => p,
                    None => {
                        let p = index(plan.pairs.len());
                        plan.pairs.push(PlannedPair {
                            span: index(s),
                            attr: index(a),
                            text: None,
                            hash: key.hash,
                        });
                        per_pair.push((0, u32::MAX));
                        pair_index.insert(key, p);
                        p
                    }
                };
                if let Some((count, last)) = per_pair.get_mut(pair as usize)
                    && *last != trace
                {
                    *count += 1;
                    *last = trace;
                    met.push((pair, trace));
                }
            }
        }
        plan.entries = entries_by_pair(&met, &per_pair);
        // The texts made for ints and doubles move from the map's keys into the pairs.
        for (key, p) in pair_index {
            if let (Cow::Owned(text), Some(pair)) = (key.value, plan.pairs.get_mut(p as usize)) {
                pair.text = Some(text);
            }
        }
        plan
    }

    /// Calls `f` once per distinct pair of the request, with the pair (borrowed from
    /// `spans`, the spans the plan was made of) and the indices into [`AttrPlan::traces`] of
    /// the traces that have it, ascending.
    pub(super) fn for_each_pair<'a>(
        &'a self,
        spans: &'a [Span],
        mut f: impl FnMut(PairKey<'a>, &mut dyn Iterator<Item = usize>),
    ) {
        for run in self.entries.chunk_by(|a, b| a >> 32 == b >> 32) {
            let Some(pair) = run.first().and_then(|e| self.pairs.get((e >> 32) as usize)) else {
                continue;
            };
            let Some(kv) = spans
                .get(pair.span as usize)
                .and_then(|span| span.attributes.get(pair.attr as usize))
            else {
                continue;
            };
            let value = match &pair.text {
                Some(text) => Cow::Borrowed(text.as_str()),
                None => match attr_index_text(&kv.value) {
                    Some(text) => text,
                    None => continue,
                },
            };
            let key = PairKey {
                key: &kv.key,
                value,
                hash: pair.hash,
            };
            f(
                key,
                &mut run.iter().map(|e| (e & u64::from(u32::MAX)) as usize),
            );
        }
    }
}

/// The entries `pair << 32 | trace` of `met` ((pair, trace) pairs), ascending and distinct:
/// placed by pair first (`per_pair[pair].0` of them each), then each pair's traces sorted,
/// which are mostly in order already (traces are numbered as their first span comes). A sort
/// of all the entries at once was a fifth of the plan's instructions.
fn entries_by_pair(met: &[(u32, u32)], per_pair: &[(u32, u32)]) -> Vec<u64> {
    let mut starts: Vec<usize> = Vec::with_capacity(per_pair.len() + 1);
    let mut at = 0usize;
    for (count, _) in per_pair {
        starts.push(at);
        at += *count as usize;
    }
    starts.push(at);
    let mut placed = vec![0u64; at];
    let mut next = starts.clone();
    for &(pair, trace) in met {
        if let Some(slot) = next.get_mut(pair as usize) {
            if let Some(entry) = placed.get_mut(*slot) {
                *entry = u64::from(pair) << 32 | u64::from(trace);
            }
            *slot += 1;
        }
    }
    let mut entries = Vec::with_capacity(at);
    for bounds in starts.windows(2) {
        let Some(run) = placed.get_mut(bounds[0]..bounds[1]) else {
            continue;
        };
        run.sort_unstable();
        for &entry in run.iter() {
            if entries.last() != Some(&entry) {
                entries.push(entry);
            }
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AttrValue;
    use crate::store::conformance;

    /// Every attribute-index row (key, value, trace start, trace id) of the file, sorted; the
    /// keys' text, not their ids (which depend on the order keys were first seen).
    fn attr_rows(path: &std::path::Path) -> Vec<(String, String, i64, Vec<u8>)> {
        let conn = rusqlite::Connection::open(path).unwrap();
        let mut sql = "SELECT k.key, s.value, s.start_ns, s.trace_id FROM span_attrs_new s \
                       JOIN attr_keys k ON k.id = s.key"
            .to_owned();
        for run in super::super::attr_runs::runs(&conn).unwrap() {
            assert!(run.key_ids, "runs of this version hold ids");
            sql.push_str(&format!(
                " UNION ALL SELECT k.key, r.value, r.start_ns, r.trace_id FROM {} r \
                 JOIN attr_keys k ON k.id = r.key",
                run.table()
            ));
        }
        let mut rows: Vec<_> = conn
            .prepare(&sql)
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        rows.sort_unstable();
        rows
    }

    /// The writer indexes the same rows from a request's plan (every span new) as from the
    /// spans themselves (a request with a duplicate span, whose plan is not used).
    #[tokio::test]
    async fn planned_and_unplanned_requests_index_the_same_rows() {
        use crate::store::SpanStore;
        use crate::store::sqlite::{SqliteOptions, SqliteStore};
        let mut spans = conformance::demo_trace(3, true, 5.0);
        spans.extend(conformance::demo_trace(4, false, 1.0));
        for (i, span) in spans.iter_mut().enumerate() {
            let n = i64::try_from(i).unwrap();
            span.attributes.push(crate::model::KeyValue::new(
                "app.seq",
                AttrValue::Int(n % 3),
            ));
            span.attributes.push(crate::model::KeyValue::new(
                "app.tag",
                AttrValue::String(format!("t{i}").into()),
            ));
        }
        // The earliest span of trace 3: written alone first, it does not move the start.
        let first = spans
            .iter()
            .filter(|s| s.trace_id == spans[0].trace_id)
            .min_by_key(|s| s.start_time_unix_nano)
            .cloned()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (planned, unplanned) = (dir.path().join("a.db"), dir.path().join("b.db"));
        let store = SqliteStore::open(&planned, SqliteOptions::default()).unwrap();
        let outcome = store.write_spans(spans.clone()).await.unwrap();
        assert_eq!(outcome.duplicates, 0);
        store.shutdown().await;
        let store = SqliteStore::open(&unplanned, SqliteOptions::default()).unwrap();
        store.write_spans(vec![first]).await.unwrap();
        let outcome = store.write_spans(spans.clone()).await.unwrap();
        assert_eq!(
            outcome.duplicates, 1,
            "this request falls back to the spans"
        );
        store.shutdown().await;
        let rows = attr_rows(&planned);
        assert!(rows.len() > 20, "{rows:?}");
        assert_eq!(rows, attr_rows(&unplanned));
    }

    /// Placed by pair, each pair's traces sorted and deduplicated: the same entries as
    /// sorting and deduplicating them all, for traces met in any order and repeated.
    #[test]
    fn entries_by_pair_are_the_sorted_distinct_entries() {
        let mut seed = 7u64;
        let mut next = |n: u64| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            u32::try_from((seed >> 33) % n).unwrap()
        };
        for (pairs, traces, len) in [(1, 1, 0), (1, 1, 5), (3, 2, 40), (50, 20, 2_000)] {
            let met: Vec<(u32, u32)> = (0..len).map(|_| (next(pairs), next(traces))).collect();
            let mut per_pair = vec![(0u32, u32::MAX); pairs as usize];
            for &(pair, _) in &met {
                per_pair[pair as usize].0 += 1;
            }
            let mut want: Vec<u64> = met
                .iter()
                .map(|&(p, t)| u64::from(p) << 32 | u64::from(t))
                .collect();
            want.sort_unstable();
            want.dedup();
            assert_eq!(
                entries_by_pair(&met, &per_pair),
                want,
                "{pairs} {traces} {len}"
            );
        }
    }

    /// Each distinct pair once, with each trace that has it once, whatever the order of the
    /// spans; unindexed values (too long) and keys left out.
    #[test]
    fn a_plan_lists_each_pair_once_with_its_traces() {
        let mut spans = conformance::demo_trace(1, true, 5.0);
        spans.extend(conformance::demo_trace(2, false, 1.0));
        spans.extend(conformance::demo_trace(1, true, 5.0)); // trace 1 again, after trace 2
        spans[0].attributes.push(crate::model::KeyValue::new(
            "long",
            AttrValue::String("x".repeat(300).into()),
        ));
        let state = PairHashState::default();
        let plan = AttrPlan::new(&spans, &AttributeIndex::All, &state);
        assert_eq!(plan.traces.len(), 2);
        let mut seen: Vec<(String, String, Vec<usize>)> = Vec::new();
        plan.for_each_pair(&spans, |pair, traces| {
            assert_eq!(
                pair.hash,
                PairKey::new(&state, pair.key, pair.value.clone()).hash
            );
            seen.push((
                pair.key.to_owned(),
                pair.value.into_owned(),
                traces.collect(),
            ));
        });
        let mut names: Vec<_> = seen.iter().map(|(k, v, _)| (k, v)).collect();
        names.sort_unstable();
        let distinct = names.len();
        names.dedup();
        assert_eq!(names.len(), distinct, "each pair once");
        assert!(
            names
                .iter()
                .any(|(k, v)| *k == "http.response.status_code" && *v == "503")
        );
        assert!(!names.iter().any(|(k, _)| *k == "long"));
        for (key, value, traces) in &seen {
            assert!(traces.windows(2).all(|w| w[0] < w[1]), "{key} {traces:?}");
            // Every trace listed has a span with this pair, and every trace that has one is listed.
            for (t, id) in plan.traces.iter().enumerate() {
                let has = spans.iter().any(|s| {
                    s.trace_id == *id
                        && s.attributes.iter().any(|kv| {
                            kv.key == *key
                                && attr_index_text(&kv.value).as_deref() == Some(value.as_str())
                        })
                });
                assert_eq!(traces.contains(&t), has, "{key}={value}");
            }
        }
        let count = |plan: &AttrPlan| {
            let mut n = 0;
            plan.for_each_pair(&spans, |_, _| n += 1);
            n
        };
        assert_eq!(
            count(&AttrPlan::new(&spans, &AttributeIndex::None, &state)),
            0
        );
        let one_key = AttributeIndex::Keys(["http.response.status_code".to_owned()].into());
        let some = AttrPlan::new(&spans, &one_key, &state);
        let mut keys = Vec::new();
        some.for_each_pair(&spans, |pair, _| keys.push(pair.key.to_owned()));
        assert!(!keys.is_empty());
        assert!(keys.iter().all(|k| k == "http.response.status_code"));
    }
}
