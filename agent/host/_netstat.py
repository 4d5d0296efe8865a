"""Listening TCP ports of a process's network namespace, from ``/proc/PID/net/tcp{,6}``.

``/proc/PID/net`` shows the sockets of the network namespace PID lives in,
not only the ones PID opened: for a container's (or the pause process's) PID
that is the whole pod's network namespace, which every container of the pod
shares. That is what tells whether something in the pod serves a declared
``containerPort``, without entering the namespace.

Line format (``net/ipv4/tcp_ipv4.c``, ``tcp4_seq_show``)::

    sl  local_address rem_address   st tx_queue rx_queue ...
     0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 ...

addresses are hex ``ADDR:PORT``; ``st`` is the kernel's TCP state, ``0A`` is
``TCP_LISTEN``.

Part of the host adapter: imports ``_procfs``, the errors and the standard library only.
"""

from __future__ import annotations

from pathlib import Path

from agent.errors import ProcessGone
from agent.host._procfs import ProcDir

_LISTEN = "0A"
_TABLES = ("net/tcp", "net/tcp6")


def parse_listening(text: str) -> set[int]:
    """Ports in state LISTEN in one ``net/tcp`` or ``net/tcp6`` table."""
    ports: set[int] = set()
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3].upper() != _LISTEN:
            continue
        _, sep, port_hex = fields[1].rpartition(":")
        if not sep:
            continue
        try:
            ports.add(int(port_hex, 16))
        except ValueError:
            continue
    return ports


def listening_tcp_ports(pid: int, proc_root: Path = Path("/proc")) -> set[int]:
    """TCP ports something listens on in the network namespace of ``pid`` (IPv4 and IPv6).

    Raises ``ProcessGone`` when the process does not exist: an empty set would
    claim that nothing listens. A missing ``tcp6`` table (IPv6 disabled) is
    simply skipped.
    """
    ports: set[int] = set()
    read_any = False
    with ProcDir(pid, proc_root) as proc:
        for table in _TABLES:
            try:
                data = proc.read(table)
            except (FileNotFoundError, PermissionError):
                continue
            read_any = True
            ports |= parse_listening(data.decode("ascii", "replace"))
    if not read_any:
        raise ProcessGone(f"process {pid} has no readable TCP socket table", pid=pid)
    return ports
