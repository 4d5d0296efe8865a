"""Kubelet's restart backoff: the current step and when the next try comes.

Kubelet restarts a container at once after its first exit, then waits 10 s,
20 s, 40 s ... doubling up to 300 s, counted from the exit
(``lastState.terminated.finishedAt``). While it waits, the container's
waiting message says the step: ``back-off 40s restarting failed
container=<c> pod=<pod>_<ns>(<uid>)``. The step is keyed on the container's
spec hash and forgotten after 10 minutes without an exit. Nodes may set a
different cap (KubeletCrashLoopBackOffMax), so the message is preferred over
the computed value.

Domain: imports the standard library and other domain modules only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from agent.domain.kubemodel import ContainerStatus

INITIAL_BACKOFF = timedelta(seconds=10)
MAX_BACKOFF = timedelta(seconds=300)
BACKOFF_RESET = timedelta(minutes=10)

_MESSAGE = re.compile(r"back-off (?P<step>[0-9][0-9.a-zµ]*) restarting failed container", re.I)
# A part starts where no digit or dot comes before it, and its digits are
# taken whole: searching a long run of digits then costs one pass, not one
# pass from each digit.
_GO_DURATION_PART = re.compile(r"(?<![\d.])(\d++(?:\.\d++)?)(ns|us|µs|ms|s|m|h)")
# Kubelet's message is short; a rule reads no further than this into one.
_MESSAGE_CHARS = 4096
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_go_duration(text: str) -> timedelta | None:
    """Go's ``time.Duration.String()`` form: "40s", "2m40s", "5m0s", "1h0m0s", "1.5s"."""
    pos = 0
    seconds = 0.0
    for m in _GO_DURATION_PART.finditer(text):
        if m.start() != pos:
            return None
        seconds += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if pos == 0 or pos != len(text):
        return None
    return timedelta(seconds=seconds)


def go_duration(d: timedelta) -> str:
    """A whole-second duration as Go prints it, so it reads like kubelet's message: "1m20s"."""
    total = int(d.total_seconds())
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{seconds}s"
    if minutes:
        return f"{minutes}m{seconds}s"
    return f"{seconds}s"


def backoff_from_message(message: str | None) -> timedelta | None:
    """The step a CrashLoopBackOff waiting message names ("back-off 40s ..."); None without one."""
    if not message:
        return None
    m = _MESSAGE.search(message, 0, _MESSAGE_CHARS)
    return parse_go_duration(m.group("step")) if m else None


def backoff_for_restarts(restart_count: int) -> timedelta:
    """The step kubelet waits after the exit that ended attempt ``restart_count``.

    Attempt 0 exiting is restarted at once and arms 10 s; the next exit waits
    those 10 s, and each further one doubles them, capped at 300 s.
    """
    if restart_count <= 0:
        return timedelta(0)
    # 2**5 * 10 s already passes the cap; a bound keeps big counts cheap.
    step: timedelta = INITIAL_BACKOFF * (2 ** min(restart_count - 1, 6))
    return min(step, MAX_BACKOFF)


@dataclass(frozen=True, slots=True)
class Backoff:
    """The step a crash-looping container waits, where it was read, and when it ends."""

    step: timedelta
    source: Literal["message", "restart-count"]
    # When kubelet will start the container again; None without an exit time.
    next_try: datetime | None


def current_backoff(status: ContainerStatus) -> Backoff | None:
    """The backoff of a container waiting in CrashLoopBackOff; None otherwise."""
    state = status.state
    if not state.is_waiting or state.reason != "CrashLoopBackOff":
        return None
    step = backoff_from_message(state.message)
    source: Literal["message", "restart-count"] = "message"
    if step is None:
        step = backoff_for_restarts(status.restart_count)
        source = "restart-count"
    last = status.last_state
    finished = last.finished_at if last.is_terminated else None
    return Backoff(step, source, finished + step if finished is not None else None)
