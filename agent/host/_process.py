"""Process snapshots, trees and the PID -> container reverse lookup.

Part of the host adapter, and the agent's one user of psutil: imports ``_cgroup``,
``_procfs``, the domain model and the errors.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict, deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psutil

from agent.domain.model import ProcessInfo, ProcessNode
from agent.errors import Forbidden, ProcessGone
from agent.host._cgroup import container_id_from_cgroup
from agent.host._procfs import (
    CLOCK_TICKS,
    ProcDir,
    check_pid,
    ppid_map,
    read_stat,
    start_time_from_ticks,
)

log = logging.getLogger(__name__)

PROC = Path("/proc")
MAX_TREE_PROCESSES = 4096
# ProcessNode nests one level per generation; serialisers and dataclass
# equality recurse through it, so a deep fork chain is cut well before
# Python's recursion limit.
MAX_TREE_DEPTH = 128
MAX_ANCESTRY_STEPS = 1024

# psutil reads its procfs location from a module global at call time. Every
# psutil call in the agent happens here, under this lock, with the global
# pinned to the caller's proc_root for the duration.
_psutil_lock = threading.Lock()


@contextmanager
def _psutil_at(proc_root: Path) -> Iterator[None]:
    with _psutil_lock:
        saved = psutil.PROCFS_PATH
        psutil.PROCFS_PATH = str(proc_root)
        try:
            yield
        finally:
            psutil.PROCFS_PATH = saved


@dataclass(frozen=True, slots=True)
class _PsutilFields:
    start_ticks: int
    ppid: int
    name: str
    cmdline: tuple[str, ...]
    state: str
    user: str | None
    rss_bytes: int
    cpu_user_seconds: float
    cpu_system_seconds: float


def _read_psutil(pid: int, proc_root: Path) -> _PsutilFields:
    with _psutil_at(proc_root):
        try:
            proc = psutil.Process(pid)
            with proc.oneshot():
                # Ticks since boot: the same quantity ProcDir.stat() reports,
                # so the caller can tell whether psutil saw the same process.
                start_ticks = round((proc.create_time() - psutil.boot_time()) * CLOCK_TICKS)
                ppid = proc.ppid()
                # psutil answers "?" for state letters it does not know.
                status: str = proc.status()
                cpu = proc.cpu_times()
                name = proc.name()
                cmdline: tuple[str, ...]
                try:
                    cmdline = tuple(proc.cmdline())
                except (psutil.ZombieProcess, psutil.AccessDenied):
                    cmdline = ()
                user: str | None
                try:
                    user = proc.username()
                except (psutil.ZombieProcess, psutil.AccessDenied):
                    user = None
                try:
                    rss = int(proc.memory_info().rss)
                except (psutil.ZombieProcess, psutil.AccessDenied):
                    rss = 0
        except (psutil.NoSuchProcess, FileNotFoundError, ProcessLookupError):
            # NoSuchProcess includes ZombieProcess from the stat-based reads
            # above, which only fail that way once the zombie has been reaped.
            # psutil lets ENOENT through when /proc/PID outlives the file.
            raise ProcessGone(f"process {pid} exited while it was being read", pid=pid) from None
        except psutil.AccessDenied:
            raise Forbidden(f"not allowed to read process {pid}", pid=pid) from None
    return _PsutilFields(
        start_ticks=start_ticks,
        ppid=ppid,
        name=name,
        cmdline=cmdline,
        state="unknown" if status == "?" else status,
        user=user,
        rss_bytes=rss,
        cpu_user_seconds=float(cpu.user),
        cpu_system_seconds=float(cpu.system),
    )


def read_process(pid: int, proc_root: Path = PROC) -> ProcessInfo:
    """A snapshot of one process.

    Zombies are reported with state ``"zombie"``, an empty command line and
    only the namespaces the kernel still holds for them (pid and user; the
    rest go with the process's nsproxy at exit). Fields the agent may not
    read (namespace links need ptrace-read access) come back empty or None.
    The user name is resolved against the agent's own user database, which
    in a container image rarely matches the host's or the target's; an
    unknown UID is given as its number.

    Raises ProcessGone when the process does not exist or exits before the
    snapshot is complete, Forbidden when the agent may not read it.
    """
    with ProcDir(pid, proc_root) as proc:
        try:
            anchor = proc.stat()
        except PermissionError:
            raise Forbidden(f"not allowed to read process {pid}", pid=pid) from None
        fields = _read_psutil(pid, proc_root)
        if fields.start_ticks != anchor.start_ticks:
            raise ProcessGone(f"process {pid} exited while it was being read", pid=pid)
        namespaces = proc.namespaces()
        cgroup = proc.cgroup()
        # psutil reads by path; the process still holding its directory after
        # psutil is done means the PID was not recycled under those reads.
        proc.stat()
    return ProcessInfo(
        pid=pid,
        ppid=fields.ppid,
        name=fields.name,
        cmdline=fields.cmdline,
        state=fields.state,
        started_at=start_time_from_ticks(anchor.start_ticks, proc_root),
        user=fields.user,
        rss_bytes=fields.rss_bytes,
        cpu_user_seconds=fields.cpu_user_seconds,
        cpu_system_seconds=fields.cpu_system_seconds,
        namespaces=namespaces,
        cgroup=cgroup,
        container_id=container_id_from_cgroup(cgroup),
    )


def process_tree(
    pid: int,
    proc_root: Path = PROC,
    *,
    max_processes: int = MAX_TREE_PROCESSES,
    max_depth: int = MAX_TREE_DEPTH,
    parents: Mapping[int, int] | None = None,
) -> ProcessNode:
    """The process and its descendants, breadth first, children by PID.

    Descendants that exit during the walk are left out together with their
    own children (which the kernel has reparented elsewhere by then). The
    walk stops after ``max_processes`` processes or ``max_depth`` levels so
    that a fork bomb cannot stall the agent; a truncated tree is logged.

    ``parents`` (from ``parent_map``) lets a caller walking several trees at
    once scan /proc for parents only once.

    Raises ProcessGone when ``pid`` itself does not exist.
    """
    check_pid(pid)
    root = read_process(pid, proc_root)
    children_of: defaultdict[int, list[int]] = defaultdict(list)
    for child, parent in (ppid_map(proc_root) if parents is None else parents).items():
        children_of[parent].append(child)

    infos: dict[int, ProcessInfo] = {pid: root}
    kids: dict[int, list[int]] = {pid: []}
    order = [pid]
    queue: deque[tuple[int, int]] = deque([(pid, 0)])
    truncated = False
    while queue:
        parent, depth = queue.popleft()
        candidates = sorted(children_of.get(parent, ()))
        if candidates and depth + 1 > max_depth:
            truncated = True
            continue
        for child in candidates:
            if child in infos:
                continue
            if len(infos) >= max_processes:
                truncated = True
                queue.clear()
                break
            try:
                info = read_process(child, proc_root)
            except ProcessGone:
                continue
            if info.ppid != parent:
                # Exited and recycled, or reparented, since the scan.
                continue
            infos[child] = info
            kids[child] = []
            kids[parent].append(child)
            order.append(child)
            queue.append((child, depth + 1))
    if truncated:
        log.warning(
            "process tree of %d truncated at %d processes (limits: %d processes, depth %d)",
            pid,
            len(infos),
            max_processes,
            max_depth,
        )

    # Built leaves first so that deep trees need no recursion.
    nodes: dict[int, ProcessNode] = {}
    for current in reversed(order):
        nodes[current] = ProcessNode(
            process=infos[current],
            children=tuple(nodes.pop(c) for c in kids[current]),
        )
    return nodes[pid]


def find_container_for_pid(
    pid: int,
    main_pids: Mapping[int, str],
    proc_root: Path = PROC,
) -> tuple[str, Literal["cgroup", "ancestor"]] | None:
    """Which container a host process belongs to.

    ``("<id>", "cgroup")`` when the process's cgroup names a container.
    Otherwise the parent chain is followed, from the process itself up to
    PID 1, and ``("<id>", "ancestor")`` is returned for the first PID found
    in ``main_pids`` (container main PID -> container ID), which covers
    runtimes and cgroup layouts that do not name the container. None when
    neither applies. ``main_pids`` is trusted as given: stale PIDs in it
    must be left out by the caller.

    Raises ProcessGone when ``pid`` does not exist.
    """
    with ProcDir(pid, proc_root) as proc:
        cgroup = proc.cgroup()
    container_id = container_id_from_cgroup(cgroup)
    if container_id is not None:
        return container_id, "cgroup"

    current = pid
    child_start: int | None = None
    for _ in range(MAX_ANCESTRY_STEPS):
        try:
            stat = read_stat(current, proc_root)
        except ProcessGone:
            if current == pid:
                raise
            # An ancestor exited; the chain below it has been reparented, so
            # the walk starts over from the process itself.
            current, child_start = pid, None
            continue
        if child_start is not None and stat.start_ticks > child_start:
            # A parent cannot start after its child: this PID was recycled
            # after the parent exited. Start over, as above.
            current, child_start = pid, None
            continue
        if current in main_pids:
            return main_pids[current], "ancestor"
        if current == 1 or stat.ppid <= 0:
            return None
        current, child_start = stat.ppid, stat.start_ticks
    log.warning(
        "gave up following the parents of process %d after %d steps", pid, MAX_ANCESTRY_STEPS
    )
    return None
