#!/usr/bin/env python3
"""Loopback ports for the servers that tests start (scripts/clickhouse.sh, zookeeper.sh).

  scripts/ports.py reserve N        print N distinct free ports of 127.0.0.1, one a line
  scripts/ports.py owner PORT PID   exit 0 when process PID holds the listening socket of
                                    127.0.0.1:PORT (or of the wildcard address), else 1
  scripts/ports.py held PORT        exit 0 when any process listens on PORT, else 1

`reserve` leaves each port it prints in TIME_WAIT (a connection to it is accepted and
closed from the accepting side). For the next 60 s the kernel neither hands the port to
another program that binds port 0 nor uses it as the local port of an outgoing
connection, while a server that binds it by number with SO_REUSEADDR (ClickHouse,
ZooKeeper, nats-server, and every Rust or Go listener do) still can: the port stays ours
between this script and the server's start, instead of being free for anyone to take.

`owner` reads /proc/net/tcp{,6} and /proc/PID/fd, so that a readiness check can tell our
server from a foreign process answering on the same port; `held` tells a server that exited
because its port was taken from one that failed otherwise. Where /proc has no such files
(not Linux) `owner` answers 0 (the check falls back to the server's own answer) and `held` 1.
"""
import os
import socket
import sys


def reserve_one(taken):
    """One free loopback port, left in TIME_WAIT; none of `taken`."""
    for _ in range(50):
        with socket.socket() as listener:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            port = listener.getsockname()[1]
            with socket.create_connection(("127.0.0.1", port)) as client:
                accepted, _ = listener.accept()
                # The accepting side closes first, so the TIME_WAIT is on this port.
                accepted.close()
                client.recv(1)
        if port not in taken:
            return port
    raise SystemExit("ports.py: no free port after 50 tries")


def listening_inodes(port):
    """Inodes of the sockets listening on PORT (TCP state 0A), or None without /proc."""
    found, seen_table = set(), False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        seen_table = True
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != "0A":
                continue
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                found.add(fields[9])
    return found if seen_table else None


def owns(pid, port):
    """Whether PID has a descriptor on a socket listening on PORT."""
    inodes = listening_inodes(port)
    if inodes is None:
        return True
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            return True
    return False


def main(argv):
    if len(argv) == 3 and argv[1] == "reserve" and argv[2].isdigit():
        taken = []
        for _ in range(int(argv[2])):
            taken.append(reserve_one(taken))
        print("\n".join(map(str, taken)))
        return 0
    if len(argv) == 3 and argv[1] == "held" and argv[2].isdigit():
        return 0 if listening_inodes(int(argv[2])) else 1
    if len(argv) == 4 and argv[1] == "owner" and argv[2].isdigit() and argv[3].isdigit():
        return 0 if owns(int(argv[3]), int(argv[2])) else 1
    sys.stderr.write(__doc__.split("\n\n")[0] + "\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
