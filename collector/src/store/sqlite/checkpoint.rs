//! The background WAL checkpointer (the writer connection runs with `wal_autocheckpoint = 0`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::store::StoreError;

/// WAL frames (pages) above which the writer checkpoints itself: bounds the WAL at about
/// 32 MiB of 4 KiB pages when the background checkpoints cannot catch up with a busy writer.
const WAL_LIMIT_FRAMES: i64 = 8192;
/// Spans after which the writer checkpoints itself even without a WAL size from the
/// background connection.
const WRITER_CHECKPOINT_SPANS: usize = 200_000;
/// How often the background connection checkpoints the WAL.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(50);

/// Checkpoints the WAL from a second connection on its own thread, so the writer does not pay
/// for copying pages into the database file (`wal_autocheckpoint = 0` on the writer).
///
/// A `PASSIVE` checkpoint never blocks the writer, but while the writer keeps appending it may
/// never back-fill the whole WAL, and SQLite only restarts the WAL from its beginning once it
/// has. So the writer runs a `PASSIVE` checkpoint itself when the background connection saw
/// more than [`WAL_LIMIT_FRAMES`] frames in the WAL (or after [`WRITER_CHECKPOINT_SPANS`]):
/// cheap, since the background connection has already copied nearly all frames, and it bounds
/// the WAL (`journal_size_limit` truncates it after).
pub(super) struct Checkpointer {
    /// Frames in the WAL at the background connection's last checkpoint.
    wal_frames: Arc<std::sync::atomic::AtomicI64>,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    spans_since: usize,
}

impl Checkpointer {
    /// Opens the second connection and starts its thread.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the connection or the thread cannot be started.
    pub(super) fn start(path: PathBuf) -> Result<Self, StoreError> {
        let io = |e: &dyn std::fmt::Display| StoreError::Io {
            context: "starting the WAL checkpointer".to_owned(),
            detail: e.to_string(),
        };
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| io(&e))?;
        conn.execute_batch("PRAGMA busy_timeout = 1000; PRAGMA wal_autocheckpoint = 0;")
            .map_err(|e| io(&e))?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let wal_frames = Arc::new(std::sync::atomic::AtomicI64::new(0));
        let frames = Arc::clone(&wal_frames);
        let thread = std::thread::Builder::new()
            .name("spanline-ckpt".to_owned())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(CHECKPOINT_INTERVAL)
                {
                    // Busy (another checkpoint running) or an I/O error: try again later;
                    // the writer's own checkpoints still bound the WAL.
                    if let Ok(log) =
                        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1))
                    {
                        frames.store(log, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            })
            .map_err(|e| io(&e))?;
        Ok(Self {
            wal_frames,
            stop: Some(stop),
            thread: Some(thread),
            spans_since: 0,
        })
    }

    /// Called by the writer after each group.
    pub(super) fn after_commit(&mut self, conn: &Connection, spans: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.spans_since += spans;
        if self.spans_since >= WRITER_CHECKPOINT_SPANS
            || self.wal_frames.load(Relaxed) >= WAL_LIMIT_FRAMES
        {
            self.spans_since = 0;
            self.wal_frames.store(0, Relaxed);
            let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        }
    }

    /// Stops the background thread (before the writer's final `TRUNCATE` checkpoint).
    pub(super) fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}
