"""The lab's child processes: starting them from this checkout, reading their logs, stopping them.

Owns the one SIGTERM, wait, SIGKILL sequence (``stop_process``) of the lab,
its tests and its benchmarks, ``ProcessRef`` (a PID with its start time, so
a recycled PID is never signalled), ``python_child_env`` and ``log_tail``.
Imports only the standard library, so the tests and the benchmarks can use
it without starting anything of the lab.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The checkout holding the agent and the lab, for children run as `python -m`.
REPO_ROOT = Path(__file__).resolve().parent.parent
# How long a process gets to go after SIGKILL before it counts as stuck (in
# uninterruptible sleep, say).
KILL_WAIT = 10.0


def python_child_env() -> dict[str, str]:
    """This process's environment for a ``python -m agent|lab...`` child of this checkout."""
    env = dict(os.environ)
    # Children run from other directories (the lab directory) and must work
    # without the packages being installed.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def log_tail(path: Path, lines: int = 40, indent: str = "") -> str:
    """The last ``lines`` lines of a child's log, each after ``indent``, to quote in an error."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    tail = text.splitlines()[-lines:]
    return "\n".join(indent + line for line in tail) if tail else indent + "(empty log)"


def process_start_ticks(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot; None if it is gone or a zombie.

    With the PID, this names one process: a recycled PID has another start.
    """
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # comm (field 2) may hold blanks and parentheses; the fields after its
    # closing parenthesis are fixed: state is field 3, starttime field 22.
    fields = data[data.rfind(b")") + 2 :].split()
    if len(fields) < 20 or fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


@dataclass(frozen=True, slots=True)
class ProcessRef:
    """A process started by an earlier (possibly exited) process, named by PID and start.

    Signals go through a pidfd opened before the start time is compared, so
    they can never reach a process that got the PID later.
    """

    pid: int
    start_ticks: int

    @classmethod
    def of(cls, pid: int) -> ProcessRef | None:
        """The process now holding ``pid``; None if there is none."""
        ticks = process_start_ticks(pid)
        return None if ticks is None else cls(pid, ticks)

    def alive(self) -> bool:
        """Whether this very process (not a later one on its PID) still runs."""
        return process_start_ticks(self.pid) == self.start_ticks

    def pidfd(self) -> int | None:
        """A pidfd for this process (the caller closes it); None once it is gone."""
        try:
            fd = os.pidfd_open(self.pid)
        except ProcessLookupError:
            return None
        if process_start_ticks(self.pid) != self.start_ticks:
            os.close(fd)
            return None
        return fd


def _reap(pid: int) -> None:
    # Only a child of ours can be reaped here; anyone else's parent (init,
    # once the starting process exited) does it.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _escalate(
    send: Callable[[int], None], gone_within: Callable[[float], bool], grace: float, sig: int
) -> bool:
    for signum, wait in ((sig, grace), (signal.SIGKILL, KILL_WAIT)):
        with contextlib.suppress(ProcessLookupError):
            send(signum)
        if gone_within(wait):
            return True
    return False


def _stop_child(proc: subprocess.Popen[Any], grace: float, sig: int) -> bool:
    if proc.poll() is not None:
        return True

    def gone_within(wait: float) -> bool:
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            return False
        return True

    # Popen.send_signal does nothing once the child is reaped, so its PID,
    # even if recycled, is never signalled.
    return _escalate(proc.send_signal, gone_within, grace, sig)


def _stop_ref(ref: ProcessRef, grace: float, sig: int) -> bool:
    fd = ref.pidfd()
    if fd is None:
        return True

    def gone_within(wait: float) -> bool:
        # A pidfd turns readable when its process exits.
        if select.select([fd], [], [], wait)[0]:
            _reap(ref.pid)
            return True
        return False

    try:
        return _escalate(
            lambda signum: signal.pidfd_send_signal(fd, signum), gone_within, grace, sig
        )
    finally:
        os.close(fd)


def stop_process(
    target: subprocess.Popen[Any] | ProcessRef, grace: float = 10.0, *, sig: int = signal.SIGTERM
) -> bool:
    """Send ``sig``, then SIGKILL after ``grace`` seconds; True once the process is gone.

    ``target`` is a child of ours (waited for, so reaped) or a ``ProcessRef``
    (any process, signalled only while its start time still matches).
    """
    if isinstance(target, ProcessRef):
        return _stop_ref(target, grace, sig)
    return _stop_child(target, grace, sig)


__all__ = [
    "KILL_WAIT",
    "REPO_ROOT",
    "ProcessRef",
    "log_tail",
    "process_start_ticks",
    "python_child_env",
    "stop_process",
]
