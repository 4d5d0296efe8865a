"""Direct ``/proc`` reads that psutil does not offer or that must stay cheap.

Per-process files are read through a descriptor of the ``/proc/PID``
directory (:class:`ProcDir`). Such a descriptor stays bound to the process it
was opened for: once that process is reaped, every read through it fails
with ESRCH, even if the PID has been handed to a new process. Reading a
process's files through one descriptor therefore never mixes two processes.

Part of the host adapter: imports the errors and the standard library only.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType

from agent.errors import InvalidInput, ProcessGone

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Two processes holding the same PID less than one clock tick apart cannot be
# told apart by start time, so comparisons allow that much slack and no more.
START_TIME_TOLERANCE = timedelta(seconds=1 / CLOCK_TICKS)

_boot_times: dict[str, float] = {}
_boot_lock = threading.Lock()


def check_pid(pid: int) -> None:
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        raise InvalidInput(f"not a process ID: {pid!r}", pid=pid)


def boot_time(proc_root: Path) -> float:
    """Boot time (epoch seconds) from ``proc_root/stat``, read once per root.

    The kernel derives ``btime`` from the current wall clock, so it moves when
    the clock is stepped. Reading it once keeps every start time this agent
    computes comparable with every other one for the agent's lifetime.
    """
    key = str(proc_root)
    with _boot_lock:
        cached = _boot_times.get(key)
        if cached is not None:
            return cached
        with open(proc_root / "stat", "rb") as f:
            for line in f:
                if line.startswith(b"btime "):
                    value = float(line.split()[1])
                    break
            else:
                raise OSError(f"no btime line in {proc_root / 'stat'}")
        _boot_times[key] = value
        return value


def start_time_from_ticks(ticks: int, proc_root: Path) -> datetime:
    return datetime.fromtimestamp(ticks / CLOCK_TICKS + boot_time(proc_root), tz=UTC)


def same_start(actual: datetime, expected: datetime) -> bool:
    if expected.tzinfo is None:
        raise InvalidInput("start time must carry a time zone", start_time=expected.isoformat())
    return abs(actual - expected) < START_TIME_TOLERANCE


@dataclass(frozen=True, slots=True)
class Stat:
    """The fields of ``/proc/PID/stat`` this package uses."""

    comm: str
    state: str
    ppid: int
    start_ticks: int


def parse_stat(data: bytes) -> Stat:
    # comm may itself contain spaces and parentheses; it ends at the last ')'.
    lpar = data.index(b"(")
    rpar = data.rindex(b")")
    fields = data[rpar + 2 :].split()
    return Stat(
        comm=data[lpar + 1 : rpar].decode("utf-8", "replace"),
        state=fields[0].decode("ascii", "replace"),
        ppid=int(fields[1]),
        start_ticks=int(fields[19]),
    )


class ProcDir:
    """An open ``proc_root/PID`` directory; see the module docstring.

    Opening raises :class:`ProcessGone` when the PID does not exist.
    """

    def __init__(self, pid: int, proc_root: Path) -> None:
        check_pid(pid)
        self.pid = pid
        self.proc_root = proc_root
        try:
            self._fd: int | None = os.open(proc_root / str(pid), os.O_RDONLY | os.O_DIRECTORY)
        except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
            raise ProcessGone(f"process {pid} does not exist", pid=pid) from None

    def __enter__(self) -> ProcDir:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _dir_fd(self) -> int:
        if self._fd is None:
            raise ValueError("ProcDir is closed")
        return self._fd

    def _gone(self) -> ProcessGone:
        return ProcessGone(f"process {self.pid} exited while it was being read", pid=self.pid)

    def read(self, name: str) -> bytes:
        """Read a whole file; ProcessGone once the process has been reaped."""
        try:
            fd = os.open(name, os.O_RDONLY, dir_fd=self._dir_fd())
        except ProcessLookupError:
            raise self._gone() from None
        try:
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
            return b"".join(chunks)
        except ProcessLookupError:
            raise self._gone() from None
        finally:
            os.close(fd)

    def stat(self) -> Stat:
        try:
            return parse_stat(self.read("stat"))
        except FileNotFoundError:
            raise self._gone() from None

    def cgroup(self) -> tuple[str, ...]:
        """Lines of the cgroup file; empty when it cannot be read."""
        try:
            data = self.read("cgroup")
        except (FileNotFoundError, PermissionError):
            return ()
        return tuple(line for line in data.decode("utf-8", "replace").splitlines() if line)

    def namespaces(self) -> dict[str, int]:
        """Namespace type -> inode from the ``ns/*`` links.

        Reading the links needs ptrace-read access to the process; links that
        cannot be read (no access, or a zombie whose namespaces are already
        released) are left out.
        """
        result: dict[str, int] = {}
        try:
            ns_fd = os.open("ns", os.O_RDONLY | os.O_DIRECTORY, dir_fd=self._dir_fd())
        except (FileNotFoundError, PermissionError):
            return result
        except ProcessLookupError:
            raise self._gone() from None
        try:
            names = sorted(os.listdir(ns_fd))
            for name in names:
                try:
                    target = os.readlink(name, dir_fd=ns_fd)
                except (FileNotFoundError, PermissionError, ProcessLookupError):
                    continue
                inode = _ns_inode(name, target)
                if inode is not None:
                    result[name] = inode
        except (PermissionError, ProcessLookupError):
            return {}
        finally:
            os.close(ns_fd)
        return result


def _ns_inode(name: str, target: str) -> int | None:
    # Targets look like "net:[4026531840]"; the *_for_children links name the
    # base type ("pid:[...]") rather than their own file name.
    _, sep, rest = target.partition(":[")
    if not sep or not rest.endswith("]"):
        return None
    try:
        return int(rest[:-1])
    except ValueError:
        return None


def read_stat(pid: int, proc_root: Path) -> Stat:
    with ProcDir(pid, proc_root) as proc:
        return proc.stat()


def process_start_time(pid: int, proc_root: Path = Path("/proc")) -> datetime | None:
    """When the process started (aware UTC), or None if it does not exist.

    One read of ``/proc/PID/stat``; the boot time is cached. The value is
    identical to ``ProcessInfo.started_at`` for the same process.
    """
    try:
        stat = read_stat(pid, proc_root)
    except ProcessGone:
        return None
    return start_time_from_ticks(stat.start_ticks, proc_root)


# The capability numbers this package asks about (linux/capability.h).
_CAPABILITIES = {"KILL": 5, "SYS_PTRACE": 19}


def has_capability(name: str, proc_root: Path = Path("/proc")) -> bool | None:
    """Whether this process holds capability ``name`` (e.g. "SYS_PTRACE"); None if unknown."""
    bit = _CAPABILITIES.get(name)
    if bit is None:
        raise InvalidInput(f"unknown capability {name!r}", capability=name)
    try:
        with open(proc_root / "self" / "status", "rb") as f:
            for line in f:
                if line.startswith(b"CapEff:"):
                    return bool(int(line.split()[1], 16) >> bit & 1)
    except (OSError, ValueError, IndexError):
        return None
    return None


def ppid_map(proc_root: Path) -> dict[int, int]:
    """PID -> parent PID for every process visible under ``proc_root``."""
    result: dict[int, int] = {}
    with os.scandir(proc_root) as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                with open(os.path.join(entry.path, "stat"), "rb") as f:
                    result[int(entry.name)] = parse_stat(f.read()).ppid
            except (OSError, ValueError, IndexError):
                # Exited between listing and reading, or not a process dir.
                continue
    return result
