"""The pod watch loop against a scripted source: every branch of list/watch/410/backoff."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from agent.errors import ApiServerError
from agent.kube import DisabledPodCache, Gone, PodCache, PodList, StreamBroken, WatchEvent
from agent.services.metrics import Metrics
from agent.services.node import NodeState
from agent.settings import Settings

NODE = "node-a"


def pod(name: str, uid: str, rv: int, phase: str = "Running") -> dict[str, Any]:
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {"name": name, "namespace": "default", "uid": uid, "resourceVersion": str(rv)},
        "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": phase},
    }


class ScriptedSource:
    """Plays back a script of list answers and watch streams; records every call.

    Each watch step is a list of items: WatchEvent to yield, an Exception to
    raise mid-stream, or "END" to end the stream cleanly (a server timeout).
    When the script runs out, watches block until the source is closed.
    """

    def __init__(self, lists: list[PodList | Exception], watches: list[list[Any]]) -> None:
        self.lists = list(lists)
        self.watches = list(watches)
        self.calls: list[tuple[str, str]] = []
        self.closed = threading.Event()
        self.idle = threading.Event()

    def list_pods(self, field_selector: str) -> PodList:
        assert field_selector == f"spec.nodeName={NODE}"
        self.calls.append(("list", ""))
        answer = self.lists.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def watch_pods(
        self, field_selector: str, resource_version: str, timeout_seconds: int
    ) -> Iterator[WatchEvent]:
        self.calls.append(("watch", resource_version))
        if not self.watches:
            self.idle.set()
            self.closed.wait(10)
            return
        for step in self.watches.pop(0):
            if isinstance(step, Exception):
                raise step
            if step == "END":
                return
            yield step

    def list_events(self, namespace: str, field_selector: str) -> list[dict[str, Any]]:
        return []

    def list_services(self, namespace: str) -> list[dict[str, Any]]:
        return []

    def close(self) -> None:
        self.closed.set()


def run_until_idle(source: ScriptedSource) -> PodCache:
    cache = PodCache(source, NODE, backoff_min=0.01, backoff_max=0.02).start()
    assert source.idle.wait(5), f"loop never went idle; calls so far: {source.calls}"
    return cache


def names(cache: PodCache) -> list[str]:
    return sorted(p.name for p in cache.pods.values())


def test_list_then_watch_applies_add_update_delete_in_order() -> None:
    source = ScriptedSource(
        lists=[PodList([pod("a", "u1", 5)], "10")],
        watches=[
            [
                WatchEvent("ADDED", pod("b", "u2", 11)),
                WatchEvent("MODIFIED", pod("a", "u1", 12, phase="Failed")),
                WatchEvent("DELETED", pod("b", "u2", 13)),
            ]
        ],
    )
    cache = run_until_idle(source)
    try:
        assert names(cache) == ["a"]
        assert cache.pods["u1"].phase == "Failed"
        assert cache.resource_version == "13"
        assert source.calls == [("list", ""), ("watch", "10"), ("watch", "13")]
        assert cache.health.state == "ok"
    finally:
        cache.stop()


def test_stream_end_resumes_from_last_version_without_relisting() -> None:
    source = ScriptedSource(
        lists=[PodList([], "1")],
        watches=[
            [WatchEvent("ADDED", pod("a", "u1", 2)), "END"],
            [WatchEvent("BOOKMARK", {"kind": "Pod", "metadata": {"resourceVersion": "7"}})],
            [WatchEvent("ADDED", pod("b", "u2", 8))],
        ],
    )
    cache = run_until_idle(source)
    try:
        assert [c for c in source.calls if c[0] == "list"] == [("list", "")]
        assert [rv for kind, rv in source.calls if kind == "watch"] == ["1", "2", "7", "8"]
        assert names(cache) == ["a", "b"]
        assert cache.stats.bookmarks == 1
    finally:
        cache.stop()


def test_gone_relists_and_drops_pods_deleted_meanwhile() -> None:
    source = ScriptedSource(
        lists=[
            PodList([pod("a", "u1", 1), pod("b", "u2", 1)], "5"),
            # While our version expired, b was deleted and c created.
            PodList([pod("a", "u1", 1), pod("c", "u3", 40)], "50"),
        ],
        watches=[[Gone("too old")], [WatchEvent("MODIFIED", pod("c", "u3", 51))]],
    )
    cache = run_until_idle(source)
    try:
        assert names(cache) == ["a", "c"]
        assert [c for c in source.calls if c[0] == "list"] == [("list", ""), ("list", "")]
        assert cache.stats.relists_after_gone == 1
        assert cache.resource_version == "51"
    finally:
        cache.stop()


def test_outage_backs_off_reports_unavailable_then_recovers_with_relist() -> None:
    down = ApiServerError("API server: list pods failed: connection refused")
    source = ScriptedSource(
        lists=[
            PodList([pod("a", "u1", 1)], "3"),
            down,
            down,
            PodList([pod("b", "u2", 9)], "9"),
        ],
        watches=[[ApiServerError("API server: watch pods (stream) failed")]],
    )
    seen: list[str] = []
    original = PodCache._set_unavailable

    def spy(self: PodCache, reason: str) -> None:
        original(self, reason)
        seen.append(self.health.describe())

    PodCache._set_unavailable = spy  # type: ignore[method-assign]
    try:
        cache = run_until_idle(source)
    finally:
        PodCache._set_unavailable = original  # type: ignore[method-assign]
    try:
        # Three failures (stream, list, list) were reported, with one "since".
        assert len(seen) == 3
        assert all(s.startswith("unavailable since") for s in seen)
        assert len({s.split(":", 1)[0] for s in seen}) == 1
        # Back up: the stale pod a is gone, b is there, and health is ok again.
        assert names(cache) == ["b"]
        assert cache.health.state == "ok"
    finally:
        cache.stop()


def test_unreadable_object_is_skipped_not_fatal() -> None:
    source = ScriptedSource(
        lists=[PodList([{"kind": "Pod", "metadata": {}}, pod("a", "u1", 1)], "1")],
        watches=[[WatchEvent("ADDED", {"kind": "Pod"}), WatchEvent("ADDED", pod("b", "u2", 2))]],
    )
    cache = run_until_idle(source)
    try:
        assert names(cache) == ["a", "b"]
    finally:
        cache.stop()


def test_stop_unblocks_a_hanging_watch_promptly() -> None:
    source = ScriptedSource(lists=[PodList([], "1")], watches=[])
    cache = run_until_idle(source)
    started = time.monotonic()
    cache.stop(timeout=5)
    assert time.monotonic() - started < 2
    assert source.closed.is_set()


def test_disabled_cache_reports_cri_only_mode() -> None:
    cache = DisabledPodCache()
    assert cache.health.state == "disabled"
    assert "CRI-only" in cache.health.describe()
    assert dict(cache.pods) == {}


def watch_series(cache: PodCache | DisabledPodCache) -> dict[str, float]:
    """The pod watch's series in the agent's /metrics text, by sample name."""
    text = Metrics(NodeState(Settings(node_name=NODE)), cache).render().decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("podlens_pod_watch_")
    }


def bookmark(rv: int) -> WatchEvent:
    return WatchEvent("BOOKMARK", {"kind": "Pod", "metadata": {"resourceVersion": str(rv)}})


def test_every_kind_of_watch_turn_is_counted_in_metrics() -> None:
    down = ApiServerError("API server: list pods failed: connection refused")
    source = ScriptedSource(
        lists=[
            PodList([pod("a", "u1", 1)], "5"),
            PodList([pod("a", "u1", 1)], "20"),  # after the 410
            down,  # after the failed watch, the relist fails once more
            PodList([pod("a", "u1", 1)], "30"),
        ],
        watches=[
            [WatchEvent("ADDED", pod("b", "u2", 6)), bookmark(7), "END"],
            [StreamBroken("connection reset mid-stream")],
            [Gone("too old resource version")],
            [ApiServerError("API server: watch pods (stream) failed")],
            [bookmark(31)],
        ],
    )
    cache = run_until_idle(source)
    try:
        series = watch_series(cache)
        # The sixth watch is the one open now, on a script that has run out.
        assert series == {
            "podlens_pod_watch_lists_total": 3.0,
            "podlens_pod_watch_watches_total": 6.0,
            "podlens_pod_watch_events_total": 1.0,
            "podlens_pod_watch_bookmarks_total": 2.0,
            "podlens_pod_watch_relists_after_gone_total": 1.0,
            "podlens_pod_watch_streams_cut_total": 1.0,
            "podlens_pod_watch_errors_total": 2.0,
        }
        # Four lists were asked for; the one that failed is an error, not a list.
        assert [kind for kind, _ in source.calls].count("list") == 4
        assert cache.resource_version == "31"
    finally:
        cache.stop()


def test_counters_only_grow_while_the_watch_resumes() -> None:
    source = ScriptedSource(
        lists=[PodList([], "1")],
        watches=[[bookmark(2), "END"], [bookmark(3), "END"], [bookmark(4)]],
    )
    cache = run_until_idle(source)
    try:
        series = watch_series(cache)
        assert series["podlens_pod_watch_bookmarks_total"] == 3.0
        assert series["podlens_pod_watch_watches_total"] == 4.0
        assert series["podlens_pod_watch_lists_total"] == 1.0
        assert series["podlens_pod_watch_errors_total"] == 0.0
        assert series["podlens_pod_watch_relists_after_gone_total"] == 0.0
    finally:
        cache.stop()


def test_cri_only_mode_has_no_watch_series() -> None:
    assert watch_series(DisabledPodCache()) == {}
