"""How often the kernel's OOM killer struck inside a process's memory cgroup.

A container whose main process is OOM-killed ends with reason ``OOMKilled``,
but a worker process killed inside a container that keeps running leaves no
trace in the API; only the cgroup's counter remembers it:

* cgroup v2: ``memory.events`` line ``oom_kill N`` (this cgroup and its
  descendants);
* cgroup v1: ``memory.oom_control`` line ``oom_kill N`` (kernel 4.13+).

The cgroup comes from ``/proc/PID/cgroup``. Paths shown relative to a
foreign cgroup namespace (``/../..``) cannot be placed under ``cgroup_root``
and give None.

Part of the host adapter: imports ``_procfs``, the errors and the standard library only.
"""

from __future__ import annotations

from pathlib import Path

from agent.errors import ProcessGone
from agent.host._procfs import ProcDir

_DELETED_SUFFIX = " (deleted)"


def _counter(path: Path) -> int | None:
    try:
        text = path.read_text("ascii", "replace")
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return None
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill":
            try:
                return int(value.strip())
            except ValueError:
                return None
    return None


def _below(root: Path, cgroup_path: str) -> Path | None:
    parts = [p for p in cgroup_path.split("/") if p]
    if ".." in parts:
        return None
    return root.joinpath(*parts)


def oom_kill_count(
    pid: int,
    proc_root: Path = Path("/proc"),
    cgroup_root: Path = Path("/sys/fs/cgroup"),
) -> int | None:
    """The ``oom_kill`` counter of ``pid``'s memory cgroup; None when it cannot be known.

    A process that no longer exists also gives None: the caller asks on behalf
    of a container that may have exited meanwhile.
    """
    try:
        with ProcDir(pid, proc_root) as proc:
            lines = proc.cgroup()
    except ProcessGone:
        return None
    unified: str | None = None
    memory_v1: str | None = None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        path = path.removesuffix(_DELETED_SUFFIX)
        if hierarchy == "0" and controllers == "":
            unified = path
        elif "memory" in controllers.split(","):
            memory_v1 = path
    # On a hybrid host the memory controller lives in the v1 hierarchy and the
    # unified one has no memory files, so v1 is asked first when it is there.
    if memory_v1 is not None:
        where = _below(cgroup_root / "memory", memory_v1)
        if where is not None and (count := _counter(where / "memory.oom_control")) is not None:
            return count
    if unified is not None:
        where = _below(cgroup_root, unified)
        if where is not None:
            return _counter(where / "memory.events")
    return None
