"""Kubelet's restart backoff (client-go flowcontrol.RestartBackoff as kubelet configures it).

Initial 10 s, doubling, capped at 300 s, no jitter; an entry is forgotten
when the next exit comes more than twice the cap (10 minutes) after the last
restart. Durations are nominal kubelet seconds; ``time_scale`` turns them
into wall-clock seconds for a lab that runs faster than a node.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from typing import Final

INITIAL_BACKOFF: Final = 10
MAX_BACKOFF: Final = 300


class RestartBackoff:
    def __init__(self, time_scale: float = 1.0) -> None:
        self.scale = time_scale
        self._lock = threading.Lock()
        # key -> (nominal backoff seconds, wall time of the last restart)
        self._entries: dict[Hashable, tuple[int, float]] = {}

    def _expired(self, event_time: float, last_update: float) -> bool:
        return event_time - last_update > 2 * MAX_BACKOFF * self.scale

    def remaining(self, key: Hashable, event_time: float, now: float) -> tuple[float, int] | None:
        """While ``key`` is backing off since ``event_time`` (the exit): the
        wall-clock seconds left and the nominal period; None when a restart
        may happen now (kubelet's IsInBackOffSince)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            nominal, last_update = entry
            if self._expired(event_time, last_update):
                return None
            left = nominal * self.scale - (now - event_time)
            return (left, nominal) if left > 0 else None

    def next(self, key: Hashable, event_time: float, now: float) -> int:
        """Record a restart: the first gets 10 s, each later one twice the last."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or self._expired(event_time, entry[1]):
                nominal = INITIAL_BACKOFF
            else:
                nominal = min(entry[0] * 2, MAX_BACKOFF)
            self._entries[key] = (nominal, now)
            if len(self._entries) > 4096:
                self._entries = {
                    k: v for k, v in self._entries.items() if not self._expired(now, v[1])
                }
            return nominal

    def current(self, key: Hashable) -> int | None:
        with self._lock:
            entry = self._entries.get(key)
            return entry[0] if entry else None
