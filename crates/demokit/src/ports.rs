//! Loopback ports for tests that start servers as child processes (the end-to-end harness,
//! the collector's process tests); the shell scripts do the same with `scripts/ports.py`.
//!
//! A port probed by binding port 0 and released is free for anyone until the child binds
//! it: under a parallel test runner another test's probe, or an outgoing connection, can
//! take it first. [`reserve_port`] leaves the port it answers in TIME_WAIT instead (a
//! connection to it is accepted and closed from the accepting side): for the next 60 s the
//! kernel hands it neither to a bind of port 0 nor to an outgoing connection, while a server
//! that binds it by number with `SO_REUSEADDR` (Rust's and Go's listeners, ClickHouse,
//! ZooKeeper, nats-server) still can. [`listens`] tells whether a given process holds the
//! listener of a port, so that a readiness probe cannot take a foreign server for ours.

use std::collections::HashSet;
use std::io::Read;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::{Mutex, PoisonError};

/// How many ports [`reserve_port`] draws before giving up on finding one it has not
/// answered before.
const MAX_DRAWS: usize = 64;

/// Every port [`reserve_port`] answered in this process: none is answered twice.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A free TCP port of 127.0.0.1, reserved for a server that binds it by number soon (within
/// 60 s, the TIME_WAIT; see the module docs) and never answered before in this process.
///
/// # Errors
/// The socket calls failed, or [`MAX_DRAWS`] ports in a row had been answered before
/// (`AddrInUse`).
pub fn reserve_port() -> std::io::Result<u16> {
    for _ in 0..MAX_DRAWS {
        let port = reserve_one()?;
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
        if handed_out.get_or_insert_with(HashSet::new).insert(port) {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!("no port not answered before in {MAX_DRAWS} draws"),
    ))
}

/// One port of 127.0.0.1 left in TIME_WAIT by the accepting side's close.
fn reserve_one() -> std::io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let port = listener.local_addr()?.port();
    let mut client = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    let (accepted, _) = listener.accept()?;
    // The side that closes first keeps the TIME_WAIT: the accepted socket, whose local port
    // is the listener's.
    drop(accepted);
    // Wait for the close to arrive (0 bytes), so that the client's close comes second.
    let mut byte = [0u8; 1];
    let _ = client.read(&mut byte);
    Ok(port)
}

/// Whether process `pid` holds a socket listening on TCP port `port` (any local address).
///
/// Reads `/proc/net/tcp`, `/proc/net/tcp6` and `/proc/<pid>/fd`. Without those tables (not
/// Linux) it answers `true`: the caller then relies on the server's own answer alone.
pub fn listens(pid: u32, port: u16) -> bool {
    let Some(inodes) = listening_inodes(port) else {
        return true;
    };
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|target| {
            target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .is_some_and(|inode| inodes.contains(inode))
        })
    })
}

/// Whether any process listens on TCP port `port` (`false` without `/proc/net/tcp`).
pub fn held(port: u16) -> bool {
    listening_inodes(port).is_some_and(|inodes| !inodes.is_empty())
}

/// The inodes of the sockets listening on `port` (state `0A` in `/proc/net/tcp{,6}`), or
/// `None` when neither table can be read.
fn listening_inodes(port: u16) -> Option<HashSet<String>> {
    let mut found = HashSet::new();
    let mut read_any = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        read_any = true;
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let local_port = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if *state == "0A" && local_port == Some(port) {
                found.insert((*inode).to_owned());
            }
        }
    }
    read_any.then_some(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserved_port_is_answered_once_and_can_be_bound_by_number() {
        let ports: Vec<u16> = (0..20).map(|_| reserve_port().unwrap()).collect();
        let distinct: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "{ports:?}");
        // std's listener sets SO_REUSEADDR: the TIME_WAIT does not stop it.
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, ports[0])).unwrap();
        assert_eq!(listener.local_addr().unwrap().port(), ports[0]);
    }

    #[test]
    fn reserved_ports_are_not_handed_to_binds_of_port_0() {
        let reserved: HashSet<u16> = (0..50).map(|_| reserve_port().unwrap()).collect();
        // 4000 probes over ~28k ephemeral ports would hit one of 50 ports merely probed and
        // released about 7 times on average (no hit: 0.1 %).
        for _ in 0..4000 {
            let probe = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            let port = probe.local_addr().unwrap().port();
            assert!(!reserved.contains(&port), "port {port} handed out again");
        }
    }

    #[test]
    fn listens_tells_this_process_listener_from_a_free_port() {
        if listening_inodes(1).is_none() {
            eprintln!("skipped: no /proc/net/tcp here");
            return;
        }
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(listens(std::process::id(), port));
        assert!(held(port));
        let free = reserve_port().unwrap();
        assert!(!listens(std::process::id(), free));
        assert!(!held(free));
        // PID 1 is not this test process.
        assert!(std::process::id() == 1 || !listens(1, port));
    }
}
