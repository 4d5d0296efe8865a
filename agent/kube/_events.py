"""A pod's events, fetched on demand and cached briefly.

Part of the Kubernetes adapter: imports ``_source``, ``convert`` and the domain's API types.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from agent.domain.kubemodel import ApiEvent
from agent.kube._source import PodSource
from agent.kube.convert import event_from_dict

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class EventCache:
    def __init__(self, source: PodSource, ttl_seconds: float) -> None:
        self._source = source
        self._ttl = ttl_seconds
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, tuple[ApiEvent, ...]]] = {}

    def for_pod(self, namespace: str, uid: str) -> tuple[ApiEvent, ...]:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(uid)
            if hit is not None and now - hit[0] < self._ttl:
                return hit[1]
        raw = self._source.list_events(namespace, f"involvedObject.uid={uid}")
        events = tuple(
            sorted(
                (event_from_dict(item) for item in raw),
                key=lambda e: e.last_seen or _EPOCH,
            )
        )
        with self._lock:
            self._cache[uid] = (now, events)
            # Bounded: a node holds ~110 pods; drop the oldest answers first.
            if len(self._cache) > 512:
                for key, _ in sorted(self._cache.items(), key=lambda kv: kv[1][0])[:256]:
                    del self._cache[key]
        return events
