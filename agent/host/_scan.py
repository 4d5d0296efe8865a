"""One pass over /proc: the main process of every container (and pause process) at once.

Used when many containers appear together (the agent's cold start): a single
scan of each process's cgroup finds every container's processes far more
cheaply than one verbose runtime call per container.

Part of the host adapter: imports ``_cgroup``, ``_procfs`` and the standard library only.
"""

from __future__ import annotations

import os
from pathlib import Path

from agent.host._cgroup import container_id_from_cgroup
from agent.host._procfs import parse_stat


def main_pids_by_container(proc_root: Path = Path("/proc")) -> dict[str, int]:
    """Container (or sandbox) ID -> the PID of its main process.

    The main process is the one whose parent lives outside the container's
    cgroup (the runtime's shim started it); of several such processes (e.g.
    an exec next to the main one), the one that started first.
    """
    members: dict[str, list[tuple[int, int, int]]] = {}  # id -> (start, pid, ppid)
    with os.scandir(proc_root) as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                with open(os.path.join(entry.path, "cgroup")) as f:
                    owner = container_id_from_cgroup(f.read().splitlines())
                if owner is None:
                    continue
                with open(os.path.join(entry.path, "stat"), "rb") as f:
                    stat = parse_stat(f.read())
            except (OSError, ValueError, IndexError):
                continue  # exited meanwhile, or not readable
            if stat.state == "Z":
                continue
            members.setdefault(owner, []).append((stat.start_ticks, int(entry.name), stat.ppid))
    result: dict[str, int] = {}
    for owner, procs in members.items():
        inside = {pid for _, pid, _ in procs}
        roots = sorted(p for p in procs if p[2] not in inside)
        if roots:
            result[owner] = roots[0][1]
    return result
