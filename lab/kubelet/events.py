"""Events as kubelet records them: core/v1 Events, repeats folded into one with a count.

Sending happens on a thread of its own, so a slow or absent API server never
holds up a pod worker; while the server is away, events wait in a bounded
queue (the oldest are dropped first, as client-go's broadcaster drops).

Owns ``EventRecorder`` and ``InvolvedPod``. Imports ``lab.kubelet.api``,
``lab.kubelet.backoff`` for its retry delay and ``lab.apitime``.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Final

from lab.apitime import rfc3339
from lab.kubelet.api import ApiClient, ApiError
from lab.kubelet.backoff import RetryDelay

_log = logging.getLogger("lab.kubelet")

JSON = dict[str, Any]

# client-go's EventCorrelator folds identical events seen within this window.
AGGREGATE_WINDOW: Final = 600.0
_QUEUE_LIMIT: Final = 1000


@dataclass(frozen=True, slots=True)
class InvolvedPod:
    """The pod an event is about (its involvedObject)."""

    namespace: str
    name: str
    uid: str


@dataclass(frozen=True, slots=True)
class _Pending:
    ref: InvolvedPod
    type: str
    reason: str
    message: str
    field_path: str
    component: str
    host: str
    at: float


class EventRecorder:
    """Records kubelet's events for the node's pods, folding repeats; sends on its own thread."""

    def __init__(self, api: ApiClient, node_name: str) -> None:
        self.api = api
        self.node_name = node_name
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        # key -> (event name, count, first seen, last sent)
        self._seen: dict[tuple[str, ...], tuple[str, int, float, float]] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        """Start the sending thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="kubelet-events", daemon=True)
        self._thread.start()

    def stop(self, flush: float = 2.0) -> None:
        """Stop sending; events still queued get up to ``flush`` seconds."""
        deadline = time.monotonic() + flush
        while not self._queue.empty() and time.monotonic() < deadline:
            time.sleep(0.02)
        self._stop.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def emit(
        self,
        ref: InvolvedPod,
        type_: str,
        reason: str,
        message: str,
        *,
        field_path: str = "",
        component: str = "kubelet",
    ) -> None:
        """Queue an event; never blocks, and drops the oldest queued one when the queue is full."""
        host = self.node_name if component == "kubelet" else ""
        if self._queue.qsize() >= _QUEUE_LIMIT:
            with contextlib.suppress(queue.Empty):
                self._queue.get_nowait()
        self._queue.put(
            _Pending(ref, type_, reason, message, field_path, component, host, time.time())
        )

    # -- sending -------------------------------------------------------------

    def _run(self) -> None:
        retry = RetryDelay()
        held: _Pending | None = None
        while not self._stop.is_set():
            item = held if held is not None else self._queue.get()
            held = None
            if item is None:
                return
            try:
                self._send(item)
                retry.reset()
            except ApiError as exc:
                if exc.unreachable:
                    held = item
                    delay = retry.next()
                    _log.warning("events: %s; retrying in %.1fs", exc, delay)
                    self._stop.wait(delay)
                else:
                    _log.warning("events: dropped %s %s: %s", item.reason, item.ref.name, exc)

    def _send(self, item: _Pending) -> None:
        key = (
            item.component,
            item.ref.namespace,
            item.ref.uid,
            item.field_path,
            item.type,
            item.reason,
            item.message,
        )
        previous = self._seen.get(key)
        if previous is not None and item.at - previous[2] < AGGREGATE_WINDOW:
            name, count, first, _ = previous
            try:
                self.api.patch_event(
                    item.ref.namespace,
                    name,
                    {"count": count + 1, "lastTimestamp": rfc3339(item.at)},
                )
                self._seen[key] = (name, count + 1, first, item.at)
                return
            except ApiError as exc:
                if exc.code != 404:
                    raise
        name = f"{item.ref.name}.{time.time_ns():x}"
        involved: JSON = {
            "kind": "Pod",
            "namespace": item.ref.namespace,
            "name": item.ref.name,
            "uid": item.ref.uid,
            "apiVersion": "v1",
        }
        if item.field_path:
            involved["fieldPath"] = item.field_path
        source: JSON = {"component": item.component}
        if item.host:
            source["host"] = item.host
        stamp = rfc3339(item.at)
        event: JSON = {
            "kind": "Event",
            "apiVersion": "v1",
            "metadata": {"name": name, "namespace": item.ref.namespace},
            "involvedObject": involved,
            "reason": item.reason,
            "message": item.message,
            "source": source,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "type": item.type,
            "reportingComponent": item.component,
            "reportingInstance": item.host,
        }
        self.api.create_event(item.ref.namespace, event)
        self._seen[key] = (name, 1, item.at, item.at)
        if len(self._seen) > 4096:
            cutoff = time.time() - AGGREGATE_WINDOW
            self._seen = {k: v for k, v in self._seen.items() if v[3] >= cutoff}
