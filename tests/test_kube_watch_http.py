"""The pod watch with the official client over real HTTP, against the fake API server."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from agent.kube import KubeSource, PodCache, api_client_from_settings
from agent.settings import Settings
from lab.apiserver import FakeApiServer

NODE = "node-a"


def pod(name: str, node: str = NODE, ns: str = "default", phase: str = "Running") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": phase},
    }


def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.01)
    raise AssertionError("condition not met in time")


@pytest.fixture
def server() -> Iterator[FakeApiServer]:
    with FakeApiServer(bookmark_interval=0.2) as fake:
        yield fake


def start_cache(server: FakeApiServer, **kwargs: Any) -> PodCache:
    settings = Settings(api_server=server.url, api_timeout_seconds=2, node_name=NODE)
    api_client = api_client_from_settings(settings)
    source = KubeSource(api_client, settings)
    cache = PodCache(source, NODE, backoff_min=0.05, backoff_max=0.2, **kwargs).start()
    assert cache.wait_synced(5)
    return cache


def names(cache: PodCache) -> list[str]:
    return sorted(p.name for p in cache.pods.values())


def test_initial_list_holds_only_this_nodes_pods(server: FakeApiServer) -> None:
    server.add("pods", pod("mine-1"))
    server.add("pods", pod("mine-2", ns="shop"))
    server.add("pods", pod("theirs", node="node-b"))
    cache = start_cache(server)
    try:
        assert names(cache) == ["mine-1", "mine-2"]
        lists = [r for r in server.requests if not r.watch and r.path == "/api/v1/pods"]
        assert lists
        assert lists[0].query.get("fieldSelector") == f"spec.nodeName={NODE}"
    finally:
        cache.stop()


def test_add_update_delete_flow_through_the_watch(server: FakeApiServer) -> None:
    cache = start_cache(server)
    try:
        created = server.add("pods", pod("web"))
        wait_until(lambda: names(cache) == ["web"])
        server.patch_status("default", "web", {"phase": "Failed", "reason": "Evicted"})
        wait_until(lambda: cache.find("default", "web").phase == "Failed")  # type: ignore[union-attr]
        server.delete("pods", "default", "web")
        wait_until(lambda: names(cache) == [])
        assert created["metadata"]["uid"] not in cache.pods
        # Pods of other nodes never enter the cache.
        server.add("pods", pod("elsewhere", node="node-b"))
        server.add("pods", pod("here"))
        wait_until(lambda: names(cache) == ["here"])
    finally:
        cache.stop()


def test_dropped_connection_resumes_without_losing_or_duplicating(server: FakeApiServer) -> None:
    cache = start_cache(server)
    try:
        server.add("pods", pod("a"))
        wait_until(lambda: names(cache) == ["a"])
        lists_before = server.count("GET", "/api/v1/pods", watch=False)
        server.drop_watches()
        # Changes made while no watch is open are replayed from our version.
        server.add("pods", pod("b"))
        server.delete("pods", "default", "a")
        wait_until(lambda: names(cache) == ["b"])
        assert server.count("GET", "/api/v1/pods", watch=False) == lists_before
        assert cache.stats.streams_cut >= 1
        assert len(cache.pods) == 1
    finally:
        cache.stop()


def test_gone_410_relists_and_ends_with_the_true_set(server: FakeApiServer) -> None:
    server.add("pods", pod("keep"))
    server.add("pods", pod("drop"))
    cache = start_cache(server)
    try:
        wait_until(lambda: names(cache) == ["drop", "keep"])
        server.drop_watches()
        server.delete("pods", "default", "drop")
        server.add("pods", pod("new"))
        # History before now is gone: resuming from our version must fail with 410.
        server.compact()
        wait_until(lambda: names(cache) == ["keep", "new"])
        assert cache.stats.relists_after_gone >= 1
        assert server.count("GET", "/api/v1/pods", watch=False) >= 2
    finally:
        cache.stop()


def test_bookmarks_move_the_version_forward(server: FakeApiServer) -> None:
    cache = start_cache(server)
    try:
        server.add("pods", pod("elsewhere", node="node-b"))  # bumps the version, not our pods
        wait_until(lambda: cache.stats.bookmarks >= 1, timeout=3)
        wait_until(lambda: cache.resource_version == server.resource_version, timeout=3)
        watches = [r for r in server.requests if r.watch]
        assert watches[0].query.get("allowWatchBookmarks") == "true"
    finally:
        cache.stop()


def test_api_server_outage_is_reported_and_survived(server: FakeApiServer) -> None:
    server.add("pods", pod("a"))
    cache = start_cache(server)
    port = server.port
    server.stop()
    try:
        wait_until(lambda: cache.health.state == "unavailable", timeout=5)
        assert cache.health.describe().startswith("unavailable since")
        # The last known pods stay readable while the API is away.
        assert names(cache) == ["a"]
        with FakeApiServer(port=port, bookmark_interval=0.2) as again:
            # A fresh server: a was deleted meanwhile, b exists. No stale pod survives.
            again.add("pods", pod("b"))
            wait_until(lambda: cache.health.state == "ok", timeout=5)
            wait_until(lambda: names(cache) == ["b"], timeout=5)
    finally:
        cache.stop()


def test_steady_state_makes_no_list_requests(server: FakeApiServer) -> None:
    cache = start_cache(server)
    try:
        for i in range(20):
            server.add("pods", pod(f"p{i}"))
        wait_until(lambda: len(cache.pods) == 20)
        server.clear_log()
        time.sleep(1.0)
        for i in range(20):
            server.patch_status("default", f"p{i}", {"phase": "Succeeded"})
        wait_until(lambda: all(p.phase == "Succeeded" for p in cache.pods.values()))
        assert server.count("GET", "/api/v1/pods", watch=False) == 0
    finally:
        cache.stop()
