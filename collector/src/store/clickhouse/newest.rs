//! The span writer's rows of `newest_local` (schema 8; before, the view `newest_mv` wrote a
//! row per service with every insert into `spans_local`, a part per insert and shard): the
//! writer remembers the newest start it wrote per service and writes a service again only
//! when a batch's newest start is [`NEWEST_STEP_NS`] past it. The table is a hint where
//! newest-first searches start their windows, and a value too old costs work, never
//! exactness (`search.rs`, `anchor`); searches already reuse a read of it for a second.

use crate::fast_hash::FastHashMap as HashMap;

use super::rowbinary::Writer;

/// How far a service's newest span start must move past the one last written before it is
/// written again, ns (1 s, the time searches reuse a read of `newest_local`).
pub(super) const NEWEST_STEP_NS: u64 = 1_000_000_000;

/// The newest span start per service this writer wrote to `newest_local`, unix ns.
#[derive(Debug, Default)]
pub(super) struct NewestWritten {
    written: HashMap<String, u64>,
}

impl NewestWritten {
    /// Appends to `w` a `(service, start_ns)` row for each service of `batch` (its newest
    /// span start in the batch) that this writer never wrote or whose start moved at least
    /// [`NEWEST_STEP_NS`] past the one written, and remembers those as written.
    pub(super) fn rows(&mut self, batch: &HashMap<&str, u64>, w: &mut Writer) {
        for (service, start_ns) in batch {
            let due = self
                .written
                .get(*service)
                .is_none_or(|written| *start_ns >= written.saturating_add(NEWEST_STEP_NS));
            if due {
                w.bytes(service.as_bytes());
                w.u64(*start_ns);
                self.written.insert((*service).to_owned(), *start_ns);
            }
        }
    }

    /// Forgets what was written (an insert failed: its rows may be missing), so the next
    /// batch writes every service it has.
    pub(super) fn forget(&mut self) {
        self.written.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn services(rows: &[u8]) -> Vec<(String, u64)> {
        let mut r = super::super::rowbinary::Reader::new(rows);
        let mut out = Vec::new();
        while !r.is_empty() {
            out.push((r.string().unwrap(), r.u64().unwrap()));
        }
        out.sort();
        out
    }

    #[test]
    fn a_service_is_written_again_once_its_start_moved_a_step() {
        let mut newest = NewestWritten::default();
        let mut w = Writer::default();
        let batch: HashMap<&str, u64> = [("a", 10), ("b", 20)].into_iter().collect();
        newest.rows(&batch, &mut w);
        assert_eq!(services(&w.buf), [("a".into(), 10), ("b".into(), 20)]);
        // Less than a step later: nothing; a step past "a" only: "a".
        let mut w = Writer::default();
        let batch: HashMap<&str, u64> =
            [("a", 9 + NEWEST_STEP_NS), ("b", 21)].into_iter().collect();
        newest.rows(&batch, &mut w);
        assert!(w.buf.is_empty());
        let batch: HashMap<&str, u64> = [("a", 10 + NEWEST_STEP_NS)].into_iter().collect();
        newest.rows(&batch, &mut w);
        assert_eq!(services(&w.buf), [("a".into(), 10 + NEWEST_STEP_NS)]);
        // After a failed insert, everything again.
        newest.forget();
        let mut w = Writer::default();
        let batch: HashMap<&str, u64> = [("b", 21)].into_iter().collect();
        newest.rows(&batch, &mut w);
        assert_eq!(services(&w.buf), [("b".into(), 21)]);
    }
}
