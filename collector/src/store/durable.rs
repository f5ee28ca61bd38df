//! What the collector learns besides spans and keeps in the store, so that it survives a
//! restart and is shared by collectors over one store (several collectors over one
//! ClickHouse): tail sampling decisions ([`SamplingDecision`], `crate::sampling::tail`) and
//! the consumer groups each queue destination has had ([`ConsumerGroupSeen`],
//! `crate::assemble::completeness::ConsumerGroups`).

use crate::model::TraceId;

/// One tail sampling decision on a trace, as stored by
/// [`SpanStore::record_sampling_decisions`](super::SpanStore::record_sampling_decisions).
///
/// A trace has at most one stored decision: recording another replaces it (the latest
/// `decided_unix_nano` wins). It is deleted with its trace (retention, `delete_traces`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamplingDecision {
    /// The trace decided on.
    pub trace_id: TraceId,
    /// `true`: kept; `false`: dropped.
    pub kept: bool,
    /// The names of the policies that kept it, the deciding one first (empty when dropped).
    pub policies: Vec<String>,
    /// How the trace finished before the decision: `complete`, `settled` or `evicted`
    /// (`crate::sampling::tail::Decision::finish`).
    pub finish: String,
    /// When the decision was taken, unix nanoseconds.
    pub decided_unix_nano: u64,
}

/// A consumer group seen processing messages of a destination (a CONSUMER span naming both,
/// semantic conventions for messaging spans), as stored by
/// [`SpanStore::record_consumer_groups`](super::SpanStore::record_consumer_groups).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConsumerGroupSeen {
    /// `messaging.destination.name`.
    pub destination: String,
    /// `messaging.consumer.group.name`.
    pub group: String,
    /// The last time a process span of the group was seen, unix nanoseconds. Recording an
    /// older time for a stored pair keeps the newer one.
    pub last_seen_unix_nano: u64,
}
