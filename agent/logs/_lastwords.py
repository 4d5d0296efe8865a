"""The last lines of dead container attempts, kept in memory.

Kubelet removes a dead container and its log once a newer attempt has
replaced it (its GC keeps one dead instance per container), so the lines a
crash-looping container printed before dying are gone a few restarts later.
The agent captures them when it sees the exit, and keeps a bounded number.

Part of the log adapter: imports ``_tail``, the errors and the standard library only.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from agent.errors import InvalidInput, NotFound
from agent.logs._tail import TailResult, tail

# Rough per-line overhead of a LogLine with its datetime and str objects;
# only used to keep the store's size estimate honest for many short lines.
_LINE_OVERHEAD = 200


class AttemptKey(NamedTuple):
    pod_uid: str
    container: str
    attempt: int


def _checked(key: AttemptKey) -> AttemptKey:
    pod_uid, container, attempt = key
    if not isinstance(pod_uid, str) or not pod_uid:
        raise InvalidInput(f"pod uid must be a non-empty string, not {pod_uid!r}", field="pod_uid")
    if not isinstance(container, str) or not container:
        raise InvalidInput(
            f"container must be a non-empty string, not {container!r}", field="container"
        )
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 0:
        raise InvalidInput(
            f"attempt must be a non-negative integer, not {attempt!r}", field="attempt"
        )
    return AttemptKey(pod_uid, container, attempt)


def _size(result: TailResult) -> int:
    return sum(len(line.text) + _LINE_OVERHEAD for line in result.lines)


class LastWords:
    """Last lines per dead attempt, least recently used dropped first.

    Bounded three ways: ``lines`` per attempt (read with at most
    ``max_bytes_per_attempt``), ``max_attempts`` entries, and an estimated
    ``max_total_bytes`` for all of them. Only files under ``allowed_roots``
    (the node's log directories) are read. Safe to call from several
    threads, so the file read can run off the event loop.
    """

    def __init__(
        self,
        *,
        allowed_roots: Sequence[Path | str],
        lines: int = 50,
        max_attempts: int = 512,
        max_bytes_per_attempt: int = 64 * 1024,
        max_total_bytes: int = 8 * 1024 * 1024,
    ) -> None:
        for name, value in (
            ("lines", lines),
            ("max_attempts", max_attempts),
            ("max_bytes_per_attempt", max_bytes_per_attempt),
            ("max_total_bytes", max_total_bytes),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise InvalidInput(f"{name} must be a positive integer, not {value!r}")
        self._lines = lines
        self._max_attempts = max_attempts
        self._max_bytes_per_attempt = max_bytes_per_attempt
        self._max_total_bytes = max_total_bytes
        self._allowed_roots = allowed_roots
        self._entries: OrderedDict[AttemptKey, tuple[TailResult, int]] = OrderedDict()
        self._total = 0
        self._lock = threading.Lock()

    def remember(self, key: AttemptKey, log_path: Path) -> TailResult | None:
        """Read and keep the last lines of ``log_path`` for this attempt.

        Call it as soon as the exit is seen: the file may be gone after the
        next restart. Returns what was kept, or None when the file is
        already gone (nothing is stored then). Remembering a key again
        replaces the earlier capture, which may have missed the last writes.
        """
        key = _checked(key)
        try:
            result = tail(
                log_path,
                self._lines,
                max_bytes=self._max_bytes_per_attempt,
                allowed_roots=self._allowed_roots,
            )
        except NotFound:
            return None
        size = _size(result)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._total -= old[1]
            self._entries[key] = (result, size)
            self._total += size
            while len(self._entries) > self._max_attempts or (
                self._total > self._max_total_bytes and len(self._entries) > 1
            ):
                _, (_, dropped) = self._entries.popitem(last=False)
                self._total -= dropped
        return result

    def recall(self, pod_uid: str, container: str, attempt: int) -> TailResult | None:
        key = _checked(AttemptKey(pod_uid, container, attempt))
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def attempts(self, pod_uid: str, container: str) -> list[int]:
        """The attempts kept for one container, oldest first."""
        with self._lock:
            return sorted(
                k.attempt
                for k in self._entries
                if k.pod_uid == pod_uid and k.container == container
            )

    def forget_pod(self, pod_uid: str) -> int:
        """Drop every attempt of a deleted pod; returns how many were dropped."""
        with self._lock:
            gone = [k for k in self._entries if k.pod_uid == pod_uid]
            for k in gone:
                self._total -= self._entries.pop(k)[1]
            return len(gone)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    @property
    def approx_bytes(self) -> int:
        with self._lock:
            return self._total
