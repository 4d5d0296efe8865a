"""The lab kubelet's waits: kubelet's restart back-off, and retry delays for its own loops.

Owns ``RestartBackoff`` (client-go flowcontrol.Backoff as kubelet configures
it), the CrashLoopBackOff waiting message, and ``RetryDelay`` (how soon a
loop tries a server again after a failure). Kubelet's numbers (10 s
initial, doubling, 300 s cap, forgotten after 10 minutes) and Go's duration
format come from ``agent.domain.backoff``, the one place that states them;
it imports nothing else of the agent.

Durations are nominal kubelet durations; ``time_scale`` turns them into
wall-clock seconds for a lab that runs faster than a node.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from datetime import timedelta

from agent.domain.backoff import BACKOFF_RESET, INITIAL_BACKOFF, MAX_BACKOFF, go_duration

# Entries are pruned of expired ones once there are this many.
_PRUNE_AT = 4096


def crash_loop_message(step: timedelta, container: str, pod_label: str) -> str:
    """Kubelet's CrashLoopBackOff waiting message: ``back-off 1m20s restarting failed ...``."""
    return f"back-off {go_duration(step)} restarting failed container={container} pod={pod_label}"


class RestartBackoff:
    """Kubelet's per-container restart back-off, keyed by pod, container and spec hash.

    No jitter; an entry is forgotten when the next exit comes more than
    ``BACKOFF_RESET`` after the last restart.
    """

    def __init__(self, time_scale: float = 1.0) -> None:
        self.scale = time_scale
        self._lock = threading.Lock()
        # key -> (nominal step, wall time of the last restart)
        self._entries: dict[Hashable, tuple[timedelta, float]] = {}

    def _wall(self, nominal: timedelta) -> float:
        return nominal.total_seconds() * self.scale

    def _expired(self, event_time: float, last_update: float) -> bool:
        return event_time - last_update > self._wall(BACKOFF_RESET)

    def remaining(
        self, key: Hashable, event_time: float, now: float
    ) -> tuple[float, timedelta] | None:
        """While ``key`` backs off since ``event_time`` (the exit): wall seconds left and the step.

        None when a restart may happen now (kubelet's IsInBackOffSince).
        """
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            nominal, last_update = entry
            if self._expired(event_time, last_update):
                return None
            left = self._wall(nominal) - (now - event_time)
            return (left, nominal) if left > 0 else None

    def next(self, key: Hashable, event_time: float, now: float) -> timedelta:
        """Record a restart: the first arms the initial step, each later one twice the last."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or self._expired(event_time, entry[1]):
                nominal = INITIAL_BACKOFF
            else:
                nominal = min(entry[0] * 2, MAX_BACKOFF)
            self._entries[key] = (nominal, now)
            if len(self._entries) > _PRUNE_AT:
                self._entries = {
                    k: v for k, v in self._entries.items() if not self._expired(now, v[1])
                }
            return nominal


class RetryDelay:
    """Delays between tries of a failing call: ``first``, doubling up to ``cap`` seconds.

    Wall-clock seconds, not scaled: they pace the lab's own retries against
    a server that went away, not anything kubelet would show.
    """

    def __init__(self, first: float = 0.2, cap: float = 5.0) -> None:
        self.first = first
        self.cap = cap
        self.delay = first

    def reset(self) -> None:
        """The call worked: the next failure waits ``first`` again."""
        self.delay = self.first

    def next(self) -> float:
        """How long to wait before the next try; each call doubles the one after."""
        delay = self.delay
        self.delay = min(self.delay * 2, self.cap)
        return delay


__all__ = ["RestartBackoff", "RetryDelay", "crash_loop_message"]
