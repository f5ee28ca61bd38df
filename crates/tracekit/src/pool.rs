//! Recycled span records: the memory a sampled span is recorded into.
//!
//! A sampled span needs a [`SpanData`] box and an attribute list. Allocating them on the
//! request thread and freeing them on the export thread costs the allocator its slow paths
//! on both sides (the freeing thread's cache fills, the allocating thread's stays empty), and
//! every fresh allocation is memory no core has touched lately. Instead, the export worker
//! hands exported boxes back to a process-wide stack as they are, and each thread keeps a
//! small stack of its own that it refills from the shared one in bulk: one lock per
//! [`REFILL`] spans, no allocation per span in steady state.
//!
//! The worker only reads a record, so the cache lines of a recycled box and of its attribute
//! list are still in the request thread's cache when it empties the box
//! ([`SpanData::clear_for_reuse`], in [`take`]): the attribute list keeps its capacity, and
//! owned strings are freed by the thread that allocated them. The stacks are bounded (a
//! thread's holds at most [`REFILL`] boxes, the shared one [`SHARED_MAX`]; past that, boxes
//! are simply freed). A pooled record keeps its last span's owned strings until it is
//! reused, so the pool holds at most about as much span data as four full export queues of
//! the default size.

#![allow(clippy::vec_box)] // Records are boxed on purpose: they move and recycle as one pointer.

use std::cell::RefCell;
use std::sync::{Mutex, PoisonError};

use crate::span::SpanData;

/// Boxes a thread takes from the shared stack at once.
const REFILL: usize = 64;
/// The most boxes the shared stack keeps (about 2 MiB with their attribute lists).
const SHARED_MAX: usize = 8192;

/// Finished records given back by export workers, not yet emptied.
static SHARED: Mutex<Vec<Box<SpanData>>> = Mutex::new(Vec::new());

thread_local! {
    static LOCAL: RefCell<Vec<Box<SpanData>>> = const { RefCell::new(Vec::new()) };
}

/// An empty record to fill: recycled when one is available, else newly allocated.
#[inline]
pub(crate) fn take() -> Box<SpanData> {
    let recycled = LOCAL.try_with(|local| {
        let mut local = local.try_borrow_mut().ok()?;
        if let Some(b) = local.pop() {
            return Some(b);
        }
        refill(&mut local);
        local.pop()
    });
    match recycled {
        Ok(Some(mut b)) => {
            b.clear_for_reuse();
            b
        }
        _ => Box::default(),
    }
}

#[cold]
fn refill(local: &mut Vec<Box<SpanData>>) {
    let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    let n = shared.len().min(REFILL);
    let from = shared.len() - n;
    local.extend(shared.drain(from..));
}

/// Gives finished records back (from an export worker), leaving `boxes` empty. Boxes
/// beyond the shared stack's bound are freed.
pub(crate) fn give_back(boxes: &mut Vec<Box<SpanData>>) {
    if boxes.is_empty() {
        return;
    }
    let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    let room = SHARED_MAX.saturating_sub(shared.len());
    if boxes.len() > room {
        boxes.truncate(room);
    }
    shared.append(boxes);
    drop(shared);
    boxes.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_given_back_come_back_empty_and_keep_their_capacity() {
        let mut b = take();
        b.name = "x".into();
        b.attributes.reserve(8);
        let cap = b.attributes.capacity();
        let ptr: *const SpanData = &*b;
        let mut boxes = vec![b];
        give_back(&mut boxes);
        assert!(boxes.is_empty());
        // Another test may take it first; take until it shows up or the stacks are empty.
        let mut seen = false;
        for _ in 0..=(SHARED_MAX + REFILL) {
            let b = take();
            assert_eq!(b.name, "");
            assert!(b.attributes.is_empty());
            if std::ptr::eq(&*b, ptr) {
                assert_eq!(b.attributes.capacity(), cap);
                seen = true;
                break;
            }
        }
        assert!(seen, "the box given back was never handed out again");
    }
}
