"""Keep the pods bound to this node current: list, then watch from resourceVersion.

The loop runs in its own thread because the official client blocks. It:
- lists pods with ``spec.nodeName=<node>`` and remembers the list's version;
- watches from that version, applying ADDED/MODIFIED/DELETED, moving the
  version forward on every event and BOOKMARK;
- resumes the watch from the last version when the stream ends (server
  timeout, dropped connection), without relisting;
- relists on 410 Gone, replacing the whole cache so no pod is lost or kept
  stale;
- backs off (exponentially, capped) while the API server is unreachable, and
  reports itself unavailable since the first failure.
Readers get an immutable mapping (copy-on-write), so they never lock.

Part of the Kubernetes adapter: imports its siblings, the domain's API types, the errors
and the settings.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from agent.domain.kubemodel import ApiEvent, ApiPod
from agent.errors import AgentError, InvalidInput
from agent.kube._events import EventCache
from agent.kube._source import (
    Gone,
    KubeSource,
    PodSource,
    StreamBroken,
    api_client_from_settings,
)
from agent.kube.convert import pod_from_dict
from agent.settings import Settings

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class ApiHealth:
    state: str  # "ok", "unavailable", "disabled"
    since: datetime
    reason: str | None = None
    synced: bool = False

    def describe(self) -> str:
        if self.state == "ok":
            return "ok"
        if self.state == "disabled":
            return "disabled (no API server configured: CRI-only mode)"
        return f"unavailable since {self.since.isoformat()}: {self.reason}"


@dataclass(frozen=True, slots=True)
class WatchStats:
    """Counts since the watch thread started, for /metrics and for tests."""

    lists: int
    watches: int
    relists_after_gone: int
    events: int
    bookmarks: int
    streams_cut: int
    # Failures that made the loop back off (API server away, refused, a bug).
    errors: int = 0


class PodCache:
    """The node's pods as the API server sees them, kept current by a watch thread."""

    def __init__(
        self,
        source: PodSource,
        node_name: str,
        *,
        watch_timeout_seconds: int = 300,
        backoff_min: float = 0.5,
        backoff_max: float = 30.0,
        events_ttl_seconds: float = 5.0,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self._source = source
        self._events_cache = EventCache(source, events_ttl_seconds)
        self._events_ttl = events_ttl_seconds
        self._services: dict[str, tuple[float, frozenset[str]]] = {}
        self._selector = f"spec.nodeName={node_name}"
        self._watch_timeout = watch_timeout_seconds
        self._backoff_min = backoff_min
        self._backoff_max = backoff_max
        self._listeners: list[Callable[[], None]] = [on_change] if on_change else []
        self._pod_listeners: list[Callable[[ApiPod], None]] = []
        self._pods: Mapping[str, ApiPod] = MappingProxyType({})
        self._version = ""
        self._health = ApiHealth(state="unavailable", since=_now(), reason="not synced yet")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._synced = threading.Event()
        self._lists = self._watches = self._gone = self._events = self._bookmarks = 0
        self._broken = self._errors = 0
        self.generation = 0

    # --- reading

    @property
    def pods(self) -> Mapping[str, ApiPod]:
        """Pods by UID."""
        return self._pods

    @property
    def health(self) -> ApiHealth:
        return self._health

    @property
    def resource_version(self) -> str:
        return self._version

    @property
    def stats(self) -> WatchStats:
        return WatchStats(
            self._lists,
            self._watches,
            self._gone,
            self._events,
            self._bookmarks,
            self._broken,
            self._errors,
        )

    def find(self, namespace: str, name: str) -> ApiPod | None:
        for pod in self._pods.values():
            if pod.name == name and pod.namespace == namespace:
                return pod
        return None

    def wait_synced(self, timeout: float) -> bool:
        return self._synced.wait(timeout)

    def events_for(self, namespace: str, uid: str) -> tuple[ApiEvent, ...]:
        """The pod's events (blocking, with a deadline; cached briefly)."""
        return self._events_cache.for_pod(namespace, uid)

    def services_in(self, namespace: str) -> frozenset[str]:
        """Names of the Services in a namespace (blocking, with a deadline; cached briefly)."""
        now = time.monotonic()
        hit = self._services.get(namespace)
        if hit is not None and now - hit[0] < self._events_ttl:
            return hit[1]
        names = frozenset(
            str(item.get("metadata", {}).get("name", ""))
            for item in self._source.list_services(namespace)
        )
        self._services[namespace] = (now, names)
        return names

    # --- lifecycle

    def start(self) -> PodCache:
        self._thread = threading.Thread(target=self._run, name="pod-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._source.close()
        if self._thread is not None:
            self._thread.join(timeout)

    # --- the loop

    def _run(self) -> None:
        delay = self._backoff_min
        need_list = True
        while not self._stop.is_set():
            try:
                if need_list:
                    self._relist()
                    need_list = False
                delay = self._backoff_min
                self._watch_once()
            except Gone:
                log.info("pod watch: resourceVersion %s expired (410); relisting", self._version)
                self._gone += 1
                need_list = True
                continue
            except StreamBroken as exc:
                # The server replays from our version; nothing was lost.
                log.info("pod watch: %s; resuming from %s", exc, self._version)
                self._broken += 1
                self._stop.wait(self._backoff_min)
            except (AgentError, OSError) as exc:
                if self._stop.is_set():
                    return
                self._errors += 1
                self._set_unavailable(str(exc))
                # After an outage the cache may have missed deletions that
                # happened while the watch history moved on; relist.
                need_list = True
                self._stop.wait(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, self._backoff_max)
            except Exception as exc:  # a bug must not kill the watch for good
                log.exception("pod watch failed")
                self._errors += 1
                self._set_unavailable(f"watch failed: {exc!r}")
                need_list = True
                self._stop.wait(delay)
                delay = min(delay * 2, self._backoff_max)

    def _relist(self) -> None:
        listing = self._source.list_pods(self._selector)
        self._lists += 1
        pods: dict[str, ApiPod] = {}
        for item in listing.items:
            pod = self._convert(item)
            if pod is not None:
                pods[pod.uid] = pod
        self._pods = MappingProxyType(pods)
        self._version = listing.resource_version
        self._mark_ok()
        self._changed()
        for pod in pods.values():
            self._pod_changed(pod)

    def _watch_once(self) -> None:
        self._watches += 1
        for event in self._source.watch_pods(self._selector, self._version, self._watch_timeout):
            if self._stop.is_set():
                return
            self._apply(event.type, event.object)

    def _apply(self, kind: str, obj: dict[str, Any]) -> None:
        version = str(obj.get("metadata", {}).get("resourceVersion", "") or "")
        if kind == "BOOKMARK":
            self._bookmarks += 1
            if version:
                self._version = version
            return
        pod = self._convert(obj)
        if pod is None:
            return
        self._events += 1
        pods = dict(self._pods)
        if kind == "DELETED":
            pods.pop(pod.uid, None)
        elif kind in ("ADDED", "MODIFIED"):
            pods[pod.uid] = pod
        else:
            log.warning("pod watch: ignoring event type %r", kind)
            return
        self._pods = MappingProxyType(pods)
        if version:
            self._version = version
        self._changed()
        if kind != "DELETED":
            self._pod_changed(pod)

    def _convert(self, obj: dict[str, Any]) -> ApiPod | None:
        try:
            return pod_from_dict(obj)
        except InvalidInput as exc:
            log.warning("pod watch: skipping unreadable pod: %s", exc.message)
            return None

    def _mark_ok(self) -> None:
        if self._health.state != "ok":
            self._health = ApiHealth(state="ok", since=_now(), synced=True)
        self._synced.set()

    def _set_unavailable(self, reason: str) -> None:
        was = self._health
        if was.state != "unavailable":
            log.warning("API server unavailable: %s", reason)
            self._health = ApiHealth(state="unavailable", since=_now(), reason=reason)
        else:
            self._health = ApiHealth(state="unavailable", since=was.since, reason=reason)

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (from the watch thread) after every change to the cache."""
        self._listeners.append(callback)

    def add_pod_listener(self, callback: Callable[[ApiPod], None]) -> None:
        """Call ``callback(pod)`` (from the watch thread) for each pod listed, added or modified.

        The pod as the API server has it now: the node state compares the
        containers and sandbox it names with the runtime's snapshot.
        """
        self._pod_listeners.append(callback)

    def _changed(self) -> None:
        self.generation += 1
        for listener in self._listeners:
            try:
                listener()
            except Exception:
                log.exception("pod cache listener failed")

    def _pod_changed(self, pod: ApiPod) -> None:
        for listener in self._pod_listeners:
            try:
                listener(pod)
            except Exception:
                log.exception("pod listener failed for %s/%s", pod.namespace, pod.name)


class DisabledPodCache:
    """Stands in when no API server is configured (CRI-only mode)."""

    def __init__(self) -> None:
        self._health = ApiHealth(state="disabled", since=_now())
        self.generation = 0
        self._pods: Mapping[str, ApiPod] = MappingProxyType({})

    @property
    def pods(self) -> Mapping[str, ApiPod]:
        return self._pods

    @property
    def health(self) -> ApiHealth:
        return self._health

    def find(self, namespace: str, name: str) -> ApiPod | None:
        return None

    def add_listener(self, callback: Callable[[], None]) -> None:
        return None

    def add_pod_listener(self, callback: Callable[[ApiPod], None]) -> None:
        return None

    def events_for(self, namespace: str, uid: str) -> tuple[ApiEvent, ...]:
        return ()

    def services_in(self, namespace: str) -> frozenset[str] | None:
        return None

    def start(self) -> DisabledPodCache:
        return self

    def stop(self, timeout: float = 5.0) -> None:
        return None


PodCacheLike = PodCache | DisabledPodCache


def pod_cache_from_settings(settings: Settings) -> PodCacheLike:
    """The node's pod cache, or the disabled stand-in when no API server is configured."""
    api_client = api_client_from_settings(settings)
    if api_client is None:
        return DisabledPodCache()
    return PodCache(
        KubeSource(api_client, settings),
        settings.node_name,
        watch_timeout_seconds=settings.api_watch_timeout_seconds,
        events_ttl_seconds=settings.events_cache_seconds,
    )
