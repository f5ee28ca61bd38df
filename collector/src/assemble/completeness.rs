//! # Completeness: is a trace whole?
//!
//! A trace is **complete** when
//!
//! 1. it has exactly one root (a span without a parent id),
//! 2. no span is an orphan (every parent id names a span of the trace), and
//! 3. every **expected child** has arrived.
//!
//! Children are expected from the callee's own word: W3C Trace Context Level 2's
//! `traceresponse` header (`00-<trace-id>-<child-id>-<flags>`, interop.md §2.3) names the span
//! id of the callee's span for the request. A CLIENT span that recorded the answer's header as
//! the semantic-convention attribute `http.response.header.traceresponse` (a string array, or
//! a string from SDKs that record one value) expects a span with that id when the header's
//! trace id is this trace's and its flags say sampled. A CLIENT span without the header (an
//! untraced callee, a callee that does not send it) expects nothing, and neither does a
//! header naming another trace (a callee that started a trace of its own).
//!
//! Across a message queue, a PRODUCER span expects one process span (a CONSUMER span whose
//! parent it is) from each consumer group its destination has had recently: the groups are
//! learnt from committed CONSUMER spans (`messaging.destination.name`,
//! `messaging.consumer.group.name`, semantic conventions for messaging spans) and forgotten
//! after [`RECENT_CONSUMERS`] without a process span ([`ConsumerGroups`], one per collector
//! process). What is learnt is also kept in the store (`super::consumer_sync`: written at
//! most once a minute per pair, loaded at start and every 30 s), so it survives a restart
//! and collectors sharing a store learn each other's groups. A trace whose consumer never
//! comes is finished by the settle time ([`super::settle`]), incomplete, naming the group it
//! waited for.
//!
//! The rule needs only the shape of each span ([`Shape`]: ids, kind, what it awaits), so the
//! live tracker ([`super::settle`]) can apply it to spans as they are committed without
//! keeping them, and `?wait=` applies the same rule to the stored spans.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::fast_hash::FastHashSet as HashSet;
use crate::model::{self, AttrValue, Span, SpanId, SpanKind, TraceId};
use crate::store::ConsumerGroupSeen;

/// The attribute a CLIENT span records the answer's `traceresponse` header in (semantic
/// conventions: `http.response.header.<key>`, lowercase, string array).
pub const TRACERESPONSE_ATTRIBUTE: &str = "http.response.header.traceresponse";

/// What completeness needs of one span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// The span's id.
    pub span_id: SpanId,
    /// Its parent's id; `None` for a root.
    pub parent_span_id: Option<SpanId>,
    /// Its kind.
    pub kind: SpanKind,
    /// The span id of the child its callee announced (CLIENT spans with a sampled
    /// `traceresponse` of the same trace).
    pub awaits: Option<SpanId>,
    /// PRODUCER and CONSUMER spans: the hash of `messaging.destination.name` ([`name_hash`]).
    pub destination: Option<u64>,
    /// CONSUMER spans: the hash of `messaging.consumer.group.name`.
    pub group: Option<u64>,
}

/// The attribute naming a message's destination (topic, subject, queue).
pub const DESTINATION_ATTRIBUTE: &str = "messaging.destination.name";
/// The attribute naming a CONSUMER span's consumer group.
pub const GROUP_ATTRIBUTE: &str = "messaging.consumer.group.name";
/// How long a consumer group is expected on a destination after its last process span.
pub const RECENT_CONSUMERS: Duration = Duration::from_secs(15 * 60);
/// A pair seen again is queued for the store only when it was last queued this long ago
/// (so the hot path does not write per span).
pub const PERSIST_EVERY: Duration = Duration::from_secs(60);
/// Most pairs queued for the store at once; beyond, new ones wait for a later sighting.
const MAX_PENDING: usize = 10_000;

/// A stable hash of a destination or group name (the same in every run).
pub fn name_hash(name: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    name.hash(&mut h);
    h.finish()
}

fn string_attribute<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    match model::find_attribute(&span.attributes, key)? {
        AttrValue::String(v) if !v.is_empty() => Some(v),
        _ => None,
    }
}

/// The consumer groups each destination has had recently: destination hash -> (group hash
/// -> (group name, last process span seen)). Bounded by what the services declare (a few
/// groups per destination); entries older than [`RECENT_CONSUMERS`] are dropped as they
/// are read.
#[derive(Debug, Default)]
pub struct ConsumerGroups {
    by_destination: Mutex<HashMap<u64, GroupsSeen>>,
    /// Pairs to write to the store ([`ConsumerGroups::take_pending`]).
    pending: Mutex<Vec<ConsumerGroupSeen>>,
}

/// The groups of one destination: group hash -> what is known of the group.
type GroupsSeen = HashMap<u64, GroupSeen>;

/// One consumer group of a destination.
#[derive(Debug)]
struct GroupSeen {
    name: String,
    /// The last process span seen (here or, loaded from the store, by any collector).
    last: Instant,
    /// When the store was last given (or gave) a time for the pair; `None`: never.
    stored: Option<Instant>,
}

impl ConsumerGroups {
    /// The collector process's registry (fed by ingest after each commit).
    pub fn global() -> &'static ConsumerGroups {
        static GLOBAL: OnceLock<ConsumerGroups> = OnceLock::new();
        GLOBAL.get_or_init(ConsumerGroups::default)
    }

    /// The `(destination, group)` of each CONSUMER span of `spans` that names both.
    pub fn seen_in(spans: &[Span]) -> Vec<(String, String)> {
        spans
            .iter()
            .filter(|s| s.kind == SpanKind::Consumer)
            .filter_map(|s| {
                let d = string_attribute(s, DESTINATION_ATTRIBUTE)?;
                let g = string_attribute(s, GROUP_ATTRIBUTE)?;
                Some((d.to_owned(), g.to_owned()))
            })
            .collect()
    }

    /// Records that each `(destination, group)` processed a message at `now`; a pair that is
    /// new, or was last queued for the store [`PERSIST_EVERY`] ago, is queued again.
    pub fn record(&self, seen: Vec<(String, String)>, now: Instant) {
        if seen.is_empty() {
            return;
        }
        let mut due = Vec::new();
        {
            let mut map = self.lock();
            for (destination, group) in seen {
                let entry = map
                    .entry(name_hash(&destination))
                    .or_default()
                    .entry(name_hash(&group))
                    .or_insert_with(|| GroupSeen {
                        name: group,
                        last: now,
                        stored: None,
                    });
                entry.last = entry.last.max(now);
                let stale = entry
                    .stored
                    .is_none_or(|at| now.saturating_duration_since(at) >= PERSIST_EVERY);
                if stale {
                    entry.stored = Some(now);
                    due.push((destination, entry.name.clone()));
                }
            }
        }
        if due.is_empty() {
            return;
        }
        let unix = crate::time::now_unix_nano();
        let mut overflow = Vec::new();
        {
            let mut pending = self.pending_lock();
            for (destination, group) in due {
                let seen = ConsumerGroupSeen {
                    destination,
                    group,
                    last_seen_unix_nano: unix,
                };
                if pending.len() < MAX_PENDING {
                    pending.push(seen);
                } else {
                    overflow.push(seen);
                }
            }
        }
        // Not queued: queued again at their next sighting.
        self.unstore(&overflow);
    }

    /// The pairs queued for the store since the last call.
    pub fn take_pending(&self) -> Vec<ConsumerGroupSeen> {
        std::mem::take(&mut *self.pending_lock())
    }

    /// Forgets that `failed` (taken from [`take_pending`](Self::take_pending)) were given to
    /// the store, so their next sighting queues them again.
    pub fn unstore(&self, failed: &[ConsumerGroupSeen]) {
        let mut map = self.lock();
        for f in failed {
            if let Some(g) = map
                .get_mut(&name_hash(&f.destination))
                .and_then(|groups| groups.get_mut(&name_hash(&f.group)))
            {
                g.stored = None;
            }
        }
    }

    /// Learns pairs read from the store (seen by this collector before a restart, or by
    /// another one): each is expected from its last-seen time on, as if seen here then.
    /// `now` and `now_unix_nano` are the same instant on both clocks.
    pub fn merge(&self, stored: Vec<ConsumerGroupSeen>, now: Instant, now_unix_nano: u64) {
        let mut map = self.lock();
        for s in stored {
            let age = Duration::from_nanos(now_unix_nano.saturating_sub(s.last_seen_unix_nano));
            if age >= RECENT_CONSUMERS {
                continue;
            }
            // Right after boot the monotonic clock may not reach back that far.
            let Some(at) = now.checked_sub(age) else {
                continue;
            };
            let entry = map
                .entry(name_hash(&s.destination))
                .or_default()
                .entry(name_hash(&s.group))
                .or_insert_with(|| GroupSeen {
                    name: s.group,
                    last: at,
                    stored: Some(at),
                });
            entry.last = entry.last.max(at);
            entry.stored = Some(entry.stored.map_or(at, |was| was.max(at)));
        }
    }

    /// The groups recently seen on `destination` (hash), as `(group hash, name)`.
    pub fn expected(&self, destination: u64, now: Instant) -> Vec<(u64, String)> {
        let mut map = self.lock();
        let Some(groups) = map.get_mut(&destination) else {
            return Vec::new();
        };
        groups.retain(|_, g| now.saturating_duration_since(g.last) < RECENT_CONSUMERS);
        groups.iter().map(|(h, g)| (*h, g.name.clone())).collect()
    }

    fn pending_lock(&self) -> std::sync::MutexGuard<'_, Vec<ConsumerGroupSeen>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, GroupsSeen>> {
        self.by_destination
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Shape {
    /// The shape of `span` (see the module docs for `awaits`).
    pub fn of(span: &Span) -> Self {
        let awaits = if span.kind == SpanKind::Client {
            model::find_attribute(&span.attributes, TRACERESPONSE_ATTRIBUTE)
                .and_then(|v| announced_child(v, span.trace_id))
        } else {
            None
        };
        let messaging = matches!(span.kind, SpanKind::Producer | SpanKind::Consumer);
        let destination = messaging
            .then(|| string_attribute(span, DESTINATION_ATTRIBUTE).map(name_hash))
            .flatten();
        let group = (span.kind == SpanKind::Consumer)
            .then(|| string_attribute(span, GROUP_ATTRIBUTE).map(name_hash))
            .flatten();
        Self {
            span_id: span.span_id,
            parent_span_id: span.parent_span_id,
            kind: span.kind,
            awaits,
            destination,
            group,
        }
    }
}

/// The child span id a `traceresponse` attribute value announces for `trace_id`, if sampled.
fn announced_child(value: &AttrValue, trace_id: TraceId) -> Option<SpanId> {
    match value {
        AttrValue::String(text) => parse_traceresponse(text, trace_id),
        AttrValue::Array(values) => values.iter().find_map(|v| match v {
            AttrValue::String(text) => parse_traceresponse(text, trace_id),
            _ => None,
        }),
        _ => None,
    }
}

/// Parses `version-traceid-childid-flags` (W3C Trace Context Level 2 §traceresponse; the
/// version-format rules of traceparent: version `ff` is invalid, version `00` has exactly four
/// fields, a later version may append fields). Returns the child id when the trace id is
/// `trace_id` and the sampled flag is set; `None` for anything else.
pub fn parse_traceresponse(text: &str, trace_id: TraceId) -> Option<SpanId> {
    let mut fields = text.trim().split('-');
    let version = fields.next()?;
    let trace = fields.next()?;
    let child = fields.next()?;
    let flags = fields.next()?;
    let hex2 = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex2(version) || version.eq_ignore_ascii_case("ff") || !hex2(flags) {
        return None;
    }
    if version == "00" && fields.next().is_some() {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    if flags & 1 == 0 || TraceId::from_hex(trace).ok()? != trace_id {
        return None;
    }
    SpanId::from_hex(child).ok()
}

/// One span the trace still waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Missing {
    /// The span that waits for it: the CLIENT span that was answered, or `null` when an
    /// orphan waits for its parent.
    pub parent_span_id: Option<String>,
    /// The awaited span's id.
    pub span_id: String,
    /// The service expected to send it (the caller's `peer.service` or `server.address`),
    /// when known.
    pub service: Option<String>,
}

/// A span the trace waits for, by index into the checked shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Awaited {
    /// `shapes[waiter]` is a CLIENT span whose callee announced `span_id`, not yet arrived.
    Child {
        /// Index of the CLIENT span.
        waiter: usize,
        /// The announced span id.
        span_id: SpanId,
    },
    /// `shapes[waiter]` is a PRODUCER span whose destination's consumer group `group`
    /// (hash) has not processed it yet.
    Consumer {
        /// Index of the PRODUCER span.
        waiter: usize,
        /// The group's name hash.
        group: u64,
    },
    /// `shapes[orphan]` names a parent `span_id` that has not arrived.
    Parent {
        /// Index of the (first) orphan waiting for it.
        orphan: usize,
        /// The parent's span id.
        span_id: SpanId,
    },
}

/// The verdict on a set of shapes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Spans without a parent id.
    pub roots: usize,
    /// What has not arrived yet, in shape order.
    pub awaited: Vec<Awaited>,
}

impl Verdict {
    /// Exactly one root and nothing awaited.
    pub fn is_complete(&self) -> bool {
        self.roots == 1 && self.awaited.is_empty()
    }
}

/// Applies the rule of the module docs to the shapes of one trace (any order; duplicates
/// allowed), with the consumer groups of [`ConsumerGroups::global`]. O(n) time and memory.
pub fn check(shapes: &[Shape]) -> Verdict {
    check_with(shapes, ConsumerGroups::global(), Instant::now())
}

/// [`check`] with the consumer groups of `groups` as they are at `now`.
pub fn check_with(shapes: &[Shape], groups: &ConsumerGroups, now: Instant) -> Verdict {
    let ids: HashSet<SpanId> = shapes.iter().map(|s| s.span_id).collect();
    // With Zipkin-style shared ids the callee's SERVER span carries the CLIENT's own id.
    let not_client: HashSet<SpanId> = shapes
        .iter()
        .filter(|s| s.kind != SpanKind::Client)
        .map(|s| s.span_id)
        .collect();
    let mut verdict = Verdict::default();
    let mut seen_roots: HashSet<SpanId> = HashSet::default();
    let mut seen_parents: HashSet<SpanId> = HashSet::default();
    let mut seen_children: HashSet<SpanId> = HashSet::default();
    for (i, s) in shapes.iter().enumerate() {
        match s.parent_span_id {
            None => {
                if seen_roots.insert(s.span_id) {
                    verdict.roots += 1;
                }
            }
            Some(p) if !ids.contains(&p) && seen_parents.insert(p) => {
                verdict.awaited.push(Awaited::Parent {
                    orphan: i,
                    span_id: p,
                });
            }
            Some(_) => {}
        }
        if let Some(child) = s.awaits {
            let arrived = if child == s.span_id {
                not_client.contains(&child)
            } else {
                ids.contains(&child)
            };
            if !arrived && seen_children.insert(child) {
                verdict.awaited.push(Awaited::Child {
                    waiter: i,
                    span_id: child,
                });
            }
        }
    }
    let producers = shapes
        .iter()
        .enumerate()
        .filter(|(_, s)| s.kind == SpanKind::Producer);
    let mut processed: Option<HashSet<(SpanId, u64)>> = None;
    let mut seen_producers: HashSet<SpanId> = HashSet::default();
    for (i, s) in producers {
        let Some(destination) = s.destination else {
            continue;
        };
        if !seen_producers.insert(s.span_id) {
            continue;
        }
        let processed = processed.get_or_insert_with(|| {
            shapes
                .iter()
                .filter(|c| c.kind == SpanKind::Consumer)
                .filter_map(|c| Some((c.parent_span_id?, c.group?)))
                .collect()
        });
        for (group, _) in groups.expected(destination, now) {
            if !processed.contains(&(s.span_id, group)) {
                verdict.awaited.push(Awaited::Consumer { waiter: i, group });
            }
        }
    }
    verdict
}

/// The awaited spans of `verdict` (checked over `spans`, in the same order) in the JSON form
/// of the tree's `missing`, with one warning in words per entry, e.g. `order POST /payments
/// [client] is waiting for its server span 7f3a9c0e12ab34cd (payment)`.
pub fn describe(spans: &[Span], verdict: &Verdict) -> (Vec<Missing>, Vec<String>) {
    let mut missing = Vec::with_capacity(verdict.awaited.len());
    let mut words = Vec::with_capacity(verdict.awaited.len());
    for awaited in &verdict.awaited {
        match *awaited {
            Awaited::Child { waiter, span_id } => {
                let s = &spans[waiter];
                let service = peer_service(s);
                words.push(format!(
                    "{} {} [{}] is waiting for its server span {span_id}{}",
                    s.service_name,
                    s.name,
                    s.kind.as_str(),
                    service
                        .as_deref()
                        .map(|p| format!(" ({p})"))
                        .unwrap_or_default()
                ));
                missing.push(Missing {
                    parent_span_id: Some(s.span_id.to_hex()),
                    span_id: span_id.to_hex(),
                    service,
                });
            }
            Awaited::Consumer { waiter, group } => {
                let s = &spans[waiter];
                let name = ConsumerGroups::global()
                    .expected(Shape::of(s).destination.unwrap_or_default(), Instant::now())
                    .into_iter()
                    .find(|(h, _)| *h == group)
                    .map_or_else(|| format!("{group:016x}"), |(_, n)| n);
                words.push(format!(
                    "{} {} [{}] is waiting for consumer group {name}",
                    s.service_name,
                    s.name,
                    s.kind.as_str()
                ));
                missing.push(Missing {
                    parent_span_id: Some(s.span_id.to_hex()),
                    span_id: String::new(),
                    service: Some(name),
                });
            }
            Awaited::Parent { orphan, span_id } => {
                let s = &spans[orphan];
                words.push(format!(
                    "{} {} [{}] is waiting for its parent span {span_id}",
                    s.service_name,
                    s.name,
                    s.kind.as_str()
                ));
                missing.push(Missing {
                    parent_span_id: None,
                    span_id: span_id.to_hex(),
                    service: None,
                });
            }
        }
    }
    (missing, words)
}

/// The service a CLIENT span called: `peer.service`, else `server.address`.
fn peer_service(s: &Span) -> Option<String> {
    ["peer.service", "server.address"].iter().find_map(|key| {
        match model::find_attribute(&s.attributes, key)? {
            AttrValue::String(v) if !v.is_empty() => Some(v.to_string()),
            _ => None,
        }
    })
}

#[cfg(test)]
#[path = "completeness_tests.rs"]
mod tests;
