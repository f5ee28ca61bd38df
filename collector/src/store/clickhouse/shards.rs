//! Where the span writer sends a batch: straight to each shard's local tables, in parallel,
//! with the shard of a row chosen here exactly as the `Distributed` tables choose it.
//!
//! A `Distributed` table over shards of weights `w_1 .. w_n` sends a row with sharding key
//! value `k` (here `cityHash64(trace_id)`, [`city_hash64`]) to the shard owning slot
//! `k % (w_1 + .. + w_n)`, where shard 1 owns the first `w_1` slots, shard 2 the next `w_2`,
//! and so on (ClickHouse's `slot_to_shard`). [`Writes::shard_of`] does the same, so a trace
//! written here lives on the shard where reads through the `Distributed` tables (and any
//! row written through them, by an older collector or by hand) find it.
//!
//! The shards come from the cluster's `system.clusters` rows; each node of
//! `COLLECTOR_CLICKHOUSE_URL` tells which shard it is (`is_local`). Direct writes need every
//! shard of weight > 0 to have a node in the list (with replication, any of its replicas:
//! the insert goes to the first that accepts a connection, and `ReplicatedMergeTree` copies
//! it to the others); otherwise, or on one node, a batch is one write through
//! the `Distributed` tables (or the node's tables), as [`Writes::single`].

use std::sync::atomic::AtomicUsize;

use super::cityhash::city_hash64;
use super::http::{self, Node};
use super::rowbinary::Reader;
use super::sql::{Tables, quote};
use crate::model::TraceId;
use crate::store::StoreError;

/// One shard as the writer reaches it: its nodes (replicas), tried from `preferred` on.
#[derive(Debug)]
pub(super) struct Shard {
    nodes: Vec<Node>,
    preferred: AtomicUsize,
}

impl Shard {
    fn new(nodes: Vec<Node>) -> Self {
        Self {
            nodes,
            preferred: AtomicUsize::new(0),
        }
    }

    /// Runs `sql` with `body` on this shard: its one node, or the first of its replicas
    /// that accepts a connection ([`http::run_on_first_reachable`]).
    ///
    /// # Errors
    /// See [`Node::run`].
    pub(super) async fn run(
        &self,
        sql: &str,
        settings: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Vec<u8>, StoreError> {
        match self.nodes.as_slice() {
            [node] => node.run(sql, settings, body).await,
            nodes => {
                http::run_on_first_reachable(nodes, &self.preferred, sql, settings, body).await
            }
        }
    }
}

/// The span writer's targets: the shards, the tables it names on each, and the slot map.
#[derive(Debug)]
pub(super) struct Writes {
    /// The tables statements name: each shard's `*_local` tables when writing per shard,
    /// else the store's own (`Distributed` on a cluster).
    pub(super) tables: Tables,
    /// The shards, in cluster order (one entry when not writing per shard).
    pub(super) shards: Vec<Shard>,
    /// Slot -> index in `shards` (shard `i` repeated weight-of-`i` times).
    slots: Vec<usize>,
}

impl Writes {
    /// One target: `nodes` (the main node, or with replication every node, first reachable)
    /// with the store's `tables`.
    pub(super) fn single(tables: Tables, nodes: Vec<Node>) -> Self {
        Self {
            tables,
            shards: vec![Shard::new(nodes)],
            slots: vec![0],
        }
    }

    /// The index in [`Writes::shards`] of the shard that holds `trace`'s rows.
    pub(super) fn shard_of(&self, trace: &TraceId) -> usize {
        let slot = city_hash64(&trace.0) % self.slots.len() as u64;
        // `slot` < `slots.len()`, which fits a usize.
        self.slots[usize::try_from(slot).unwrap_or(0)]
    }
}

/// The `shard_num` of the node that runs it, in `cluster` (its `is_local` rows).
pub(super) fn local_shard_sql(cluster: &str) -> String {
    format!(
        "SELECT toUInt32(shard_num) FROM system.clusters \
         WHERE cluster = {} AND is_local FORMAT RowBinary",
        quote(cluster)
    )
}

/// `(shard_num, weight)` of every shard of `cluster`, in order.
pub(super) fn cluster_shards_sql(cluster: &str) -> String {
    format!(
        "SELECT toUInt32(shard_num), toUInt32(any(shard_weight)) FROM system.clusters \
         WHERE cluster = {} GROUP BY shard_num ORDER BY shard_num FORMAT RowBinary",
        quote(cluster)
    )
}

/// The shard number of a node in `cluster` (its `is_local` row), or `None` when it has
/// none or several (a proxy, or a node outside the cluster).
async fn local_shard(node: &Node, cluster: &str) -> Result<Option<u32>, StoreError> {
    let sql = local_shard_sql(cluster);
    let rows = Reader::new(&node.run(&sql, &[], Vec::new()).await?).rows(|r| r.u32())?;
    Ok(match rows.as_slice() {
        [one] => Some(*one),
        _ => None,
    })
}

/// `(shard_num, weight)` of every shard of `cluster`, in order, as `node` sees it.
async fn cluster_shards(node: &Node, cluster: &str) -> Result<Vec<(u32, u32)>, StoreError> {
    let sql = cluster_shards_sql(cluster);
    Reader::new(&node.run(&sql, &[], Vec::new()).await?).rows(|r| Ok((r.u32()?, r.u32()?)))
}

/// The writer's targets for a store over `nodes` (the first is the main node): per shard
/// when `tables` name a cluster and every shard of weight > 0 has a node among `nodes`
/// (exactly one unless `tables.replicated`), else [`Writes::single`].
///
/// # Errors
/// What asking a node about the cluster failed with.
pub(super) async fn discover(tables: &Tables, nodes: &[Node]) -> Result<Writes, StoreError> {
    let single = || {
        let targets = if tables.replicated {
            nodes.to_vec()
        } else {
            nodes.iter().take(1).cloned().collect()
        };
        Writes::single(tables.clone(), targets)
    };
    let (Some(cluster), Some(main)) = (&tables.cluster, nodes.first()) else {
        return Ok(single());
    };
    let shards = cluster_shards(main, cluster).await?;
    let mut members: Vec<Vec<Node>> = vec![Vec::new(); shards.len()];
    for node in nodes {
        let Some(num) = local_shard(node, cluster).await? else {
            return Ok(single());
        };
        match shards.iter().position(|(n, _)| *n == num) {
            Some(i) => members[i].push(node.clone()),
            None => return Ok(single()),
        }
    }
    let mut slots = Vec::new();
    let mut targets = Vec::new();
    for ((_, weight), nodes) in shards.iter().zip(members) {
        let usable = if tables.replicated {
            !nodes.is_empty()
        } else {
            nodes.len() == 1
        };
        if *weight > 0 && !usable {
            return Ok(single());
        }
        // A shard of weight 0 never receives rows; it still gets an index (no slots).
        slots.extend(std::iter::repeat_n(
            targets.len(),
            usize::try_from(*weight).unwrap_or(0),
        ));
        targets.push(Shard::new(nodes));
    }
    if slots.is_empty() {
        return Ok(single());
    }
    Ok(Writes {
        tables: Tables {
            cluster: None,
            ..tables.clone()
        },
        shards: targets,
        slots,
    })
}
