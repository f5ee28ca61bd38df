//! One child process of a test stack, its log file, and its stop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::bin_dir;

/// One running child process.
pub struct Proc {
    /// Binary name.
    pub name: &'static str,
    child: Child,
    log: PathBuf,
    /// The log's length when this process started: what it wrote comes after.
    log_start: u64,
}

impl Proc {
    /// Starts the Spanline binary `name` with `env`, logging stdout and stderr to
    /// `<log_dir>/<name>.log`.
    pub fn spawn(name: &'static str, env: &[(&str, String)], log_dir: &Path) -> Proc {
        Proc::spawn_command(name, Command::new(bin_dir().join(name)), env, log_dir)
    }

    /// Starts `cmd` as the process called `name`, like [`spawn`](Self::spawn).
    pub fn spawn_command(
        name: &'static str,
        mut cmd: Command,
        env: &[(&str, String)],
        log_dir: &Path,
    ) -> Proc {
        let log = log_dir.join(format!("{name}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open log");
        let log_start = out.metadata().map_or(0, |m| m.len());
        let err = out.try_clone().expect("clone log handle");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        // Start from a clean OTEL environment so a developer's shell cannot change the test.
        for (k, _) in std::env::vars() {
            if k.starts_with("OTEL_") {
                cmd.env_remove(k);
            }
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Proc {
            name,
            child,
            log,
            log_start,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(exit code)` once the process has exited (`Some(None)`: killed by a signal),
    /// `None` while it runs.
    pub fn exited(&mut self) -> Option<Option<i32>> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.code()),
            Ok(None) => None,
            Err(_) => Some(None),
        }
    }

    /// Sends SIGTERM and waits up to `timeout` for a clean exit; returns the exit status
    /// code, or kills the process and returns `None` if it did not stop in time.
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }

    /// The process's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// What this process wrote to its log (earlier runs of the same name append to the
    /// same file).
    pub fn log_since_start(&self) -> String {
        let all = std::fs::read(&self.log).unwrap_or_default();
        let start = usize::try_from(self.log_start).map_or(all.len(), |s| s.min(all.len()));
        String::from_utf8_lossy(&all[start..]).into_owned()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
