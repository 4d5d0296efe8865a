"""Exit notifications and signals that cannot hit a recycled PID.

A pidfd refers to one process, not to a PID number: it becomes readable when
that process exits and a signal sent through it can only reach that process.
The identity check is ordered to close the recycling race: the pidfd is
opened first, then ``/proc/PID/stat`` is compared with the expected start
time. If the PID was recycled before the pidfd was opened, the start time
differs. If it was recycled after, the pidfd's own process is gone, which the
liveness probe (watch) or the signal itself (signal_pid_checked) reports.

Part of the host adapter: imports ``_cgroup``, ``_procfs``, the errors and the standard
library only.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from agent.errors import Forbidden, InvalidInput, ProcessGone, Unavailable
from agent.host._cgroup import container_id_from_cgroup
from agent.host._procfs import check_pid, process_start_time, same_start

log = logging.getLogger(__name__)

PROC = Path("/proc")


def pidfd_unavailable() -> str | None:
    """Why this process cannot use pidfds, or None when it can.

    pidfd_open needs Linux 5.3; a seccomp profile that predates it answers
    EPERM or ENOSYS. Without pidfds the agent still sees exits by relisting,
    but it will not kill anything, since only a pidfd rules out a recycled PID.
    """
    try:
        fd = os.pidfd_open(os.getpid())
    except OSError as exc:
        return _unavailable_reason("pidfd_open", exc)
    try:
        signal.pidfd_send_signal(fd, 0)
    except OSError as exc:
        return _unavailable_reason("pidfd_send_signal", exc)
    finally:
        os.close(fd)
    return None


def _unavailable_reason(call: str, exc: OSError) -> str:
    code = errno.errorcode.get(exc.errno, str(exc.errno)) if exc.errno else "error"
    return (
        f"{call} fails here ({code}): the kernel is older than 5.3 or the seccomp "
        "profile does not allow it"
    )


def _open_checked(pid: int, start_time: datetime | None, proc_root: Path) -> int | None:
    """A pidfd for ``pid`` if it exists and started at ``start_time``, else None."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    except OSError as exc:
        reason = _unavailable_reason("pidfd_open", exc)
        raise Unavailable(reason, rule="pidfd-unavailable") from None
    try:
        actual = process_start_time(pid, proc_root)
        if actual is None or (start_time is not None and not same_start(actual, start_time)):
            os.close(fd)
            return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def signal_pid_checked(
    pid: int,
    start_time: datetime,
    sig: int,
    proc_root: Path = PROC,
) -> None:
    """Send ``sig`` to the process ``pid`` only if it started at ``start_time``.

    ``proc_root`` must be the procfs of the agent's own PID namespace, since
    pidfds are opened there. Raises ProcessGone when the process has exited
    or the PID now belongs to a process with another start time,
    InvalidInput for a naive ``start_time`` or an invalid signal, Forbidden
    when the kernel denies the signal, and Unavailable when pidfds are.
    """
    _signal_checked(pid, start_time, sig, None, proc_root).close()


class SignalledProcess:
    """A process signalled through a pidfd, which stays open to see it exit.

    The pidfd names that one process, so waiting on it can never be fooled
    by a new process that got the same PID.
    """

    def __init__(self, pid: int, fd: int, signalled_at: datetime) -> None:
        self.pid = pid
        self.signalled_at = signalled_at
        self._fd: int | None = fd

    async def wait_gone(self, within: float) -> datetime | None:
        """When the process was seen gone, or None if it outlived ``within`` seconds."""
        fd = self._fd
        if fd is None:
            raise InvalidInput("this process handle is closed")
        loop = asyncio.get_running_loop()
        gone: asyncio.Future[datetime] = loop.create_future()

        def readable() -> None:
            if not gone.done():
                gone.set_result(datetime.now(UTC))

        loop.add_reader(fd, readable)
        try:
            return await asyncio.wait_for(gone, within)
        except TimeoutError:
            return None
        finally:
            loop.remove_reader(fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def signal_container_process(
    pid: int,
    start_time: datetime,
    container_id: str,
    sig: int,
    proc_root: Path = PROC,
) -> SignalledProcess:
    """Signal ``pid`` only if it is still the process that started at ``start_time``
    in the cgroup of ``container_id``; return a handle to await its exit.

    Both checks run after the pidfd is open, so the PID cannot be recycled
    between the check and the signal.
    """
    return _signal_checked(pid, start_time, sig, container_id, proc_root)


def _signal_checked(
    pid: int,
    start_time: datetime,
    sig: int,
    container_id: str | None,
    proc_root: Path,
) -> SignalledProcess:
    check_pid(pid)
    if isinstance(sig, bool) or not isinstance(sig, int):
        raise InvalidInput(f"not a signal number: {sig!r}", signal=sig)
    if start_time.tzinfo is None:
        raise InvalidInput("start time must carry a time zone", start_time=start_time.isoformat())
    fd = _open_checked(pid, start_time, proc_root)
    if fd is None:
        raise ProcessGone(
            f"process {pid} started at {start_time.isoformat()} no longer exists",
            pid=pid,
            start_time=start_time.isoformat(),
        )
    try:
        if container_id is not None:
            _check_cgroup(pid, container_id, proc_root)
        # Stamped before the send, not after: a SIGKILLed process can be gone,
        # and its runtime can have stamped the exit, before the call returns here.
        sent_at = datetime.now(UTC)
        try:
            signal.pidfd_send_signal(fd, sig)
        except ProcessLookupError:
            raise ProcessGone(
                f"process {pid} exited before it could be signalled", pid=pid
            ) from None
        except PermissionError:
            raise Forbidden(f"not permitted to signal process {pid}", pid=pid, signal=sig) from None
        except OSError as exc:
            raise InvalidInput(f"cannot send signal {sig}: {exc.strerror}", signal=sig) from None
    except BaseException:
        os.close(fd)
        raise
    return SignalledProcess(pid, fd, sent_at)


def _check_cgroup(pid: int, container_id: str, proc_root: Path) -> None:
    try:
        lines = (proc_root / str(pid) / "cgroup").read_text().splitlines()
    except OSError:
        lines = []
    owner = container_id_from_cgroup(lines)
    if owner != container_id:
        raise ProcessGone(
            f"process {pid} is not in container {container_id[:13]}'s cgroup "
            f"(its cgroup names {owner[:13] if owner else 'no container'})",
            pid=pid,
            expected_container=container_id,
            found_container=owner,
        )


@dataclass(slots=True)
class _Watch:
    pid: int
    fd: int
    callback: Callable[[int], None]
    loop: asyncio.AbstractEventLoop


class PidWatcher:
    """Calls back when watched processes exit, from the asyncio event loop.

    Methods must be called from the thread running the event loop. Each
    ``watch`` holds its own pidfd, so one PID may be watched several times;
    ``unwatch`` drops all watches of a PID.
    """

    def __init__(self, proc_root: Path = PROC) -> None:
        self._proc_root = proc_root
        self._watches: dict[int, _Watch] = {}  # by pidfd

    @property
    def watched(self) -> frozenset[int]:
        return frozenset(w.pid for w in self._watches.values())

    def watch(
        self,
        pid: int,
        start_time: datetime | None,
        callback: Callable[[int], None],
    ) -> bool:
        """Start watching; False if the process is gone or did not start at ``start_time``.

        ``callback(pid)`` runs once, on the event loop, after the process
        exits. A zombie has already exited, so watching one calls back on the
        next loop iteration.
        """
        check_pid(pid)
        loop = asyncio.get_running_loop()
        fd = _open_checked(pid, start_time, self._proc_root)
        if fd is None:
            return False
        try:
            # The start time read above belongs to this pidfd's process only
            # if that process still existed afterwards.
            signal.pidfd_send_signal(fd, 0)
        except ProcessLookupError:
            os.close(fd)
            return False
        except PermissionError:
            pass  # denied, but the process is there
        self._watches[fd] = _Watch(pid=pid, fd=fd, callback=callback, loop=loop)
        loop.add_reader(fd, self._exited, fd)
        return True

    def _exited(self, fd: int) -> None:
        watch = self._release(fd)
        if watch is None:
            return
        try:
            watch.callback(watch.pid)
        except Exception:
            log.exception("exit callback for process %d failed", watch.pid)

    def _release(self, fd: int) -> _Watch | None:
        watch = self._watches.pop(fd, None)
        if watch is None:
            return None
        if not watch.loop.is_closed():
            watch.loop.remove_reader(fd)
        os.close(fd)
        return watch

    def unwatch(self, pid: int) -> bool:
        """Stop watching ``pid`` without calling back; False if it was not watched."""
        fds = [fd for fd, w in self._watches.items() if w.pid == pid]
        for fd in fds:
            self._release(fd)
        return bool(fds)

    def close(self) -> None:
        """Drop every watch and close its pidfd."""
        for fd in list(self._watches):
            self._release(fd)
