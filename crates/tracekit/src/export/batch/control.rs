//! Flush and shutdown requests: what `force_flush` and `shutdown` send the export worker,
//! and the worker's view of both channels as one stream of [`Control`]s.

use std::sync::mpsc::SyncSender;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use crate::export::FlushError;

/// Where a flush or shutdown answer goes.
pub(super) type Reply = SyncSender<Result<(), FlushError>>;

/// A `force_flush` call waiting for its answer.
pub(super) struct FlushRequest {
    /// When the caller stops waiting.
    pub(super) deadline: Instant,
    /// Where the answer goes.
    pub(super) reply: Reply,
}

/// The `shutdown` call.
pub(super) struct ShutdownRequest {
    /// When to give up on the spans still queued.
    pub(super) deadline: Instant,
    /// Where the answer goes.
    pub(super) reply: Reply,
}

/// The receiving ends of flush and shutdown requests.
pub(super) struct Controls {
    pub(super) flushes: mpsc::Receiver<FlushRequest>,
    pub(super) flushes_open: bool,
    pub(super) shutdown: Option<oneshot::Receiver<ShutdownRequest>>,
}

pub(super) enum Control {
    Flush(FlushRequest),
    Shutdown(ShutdownRequest),
    /// The processor was dropped without `shutdown`.
    Dropped,
}

impl Controls {
    /// The next request; pending forever once both channels are done. Cancel-safe.
    pub(super) async fn next(&mut self) -> Control {
        loop {
            let shutdown = async {
                match self.shutdown.as_mut() {
                    Some(rx) => rx.await,
                    None => std::future::pending().await,
                }
            };
            let flushes_open = self.flushes_open;
            let flush = async {
                if flushes_open {
                    self.flushes.recv().await
                } else {
                    std::future::pending().await
                }
            };
            enum Got {
                Shutdown(Result<ShutdownRequest, oneshot::error::RecvError>),
                Flush(Option<FlushRequest>),
            }
            let got = tokio::select! {
                biased;
                r = shutdown => Got::Shutdown(r),
                r = flush => Got::Flush(r),
            };
            match got {
                Got::Shutdown(r) => {
                    self.shutdown = None;
                    return match r {
                        Ok(request) => Control::Shutdown(request),
                        Err(_) => Control::Dropped,
                    };
                }
                Got::Flush(Some(request)) => return Control::Flush(request),
                Got::Flush(None) => self.flushes_open = false,
            }
        }
    }
}
