"""The fake API server, driven through the official kubernetes client.

Whatever the agent's Kubernetes code will do against the fake must mean the
same against a cluster, so these tests use the client the agent uses and
assert on what that client surfaces (models, ApiException, watch events).
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
from kubernetes import client, watch

from lab.apiserver import ApiStatusError, FakeApiServer

NS = "team-a"


def pod(
    name: str,
    namespace: str = NS,
    node: str = "node-1",
    labels: dict[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = labels
    body: dict[str, Any] = {
        "metadata": meta,
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "busybox"}]},
    }
    body.update(extra)
    return body


@pytest.fixture
def server() -> Iterator[FakeApiServer]:
    with FakeApiServer(bookmark_interval=0) as srv:
        yield srv


@pytest.fixture
def api(server: FakeApiServer) -> Iterator[client.ApiClient]:
    api_client = client.ApiClient(client.Configuration(host=server.url))
    yield api_client
    api_client.close()


@pytest.fixture
def v1(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


def status_body(err: client.ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(err.body)
    return body


def collect(
    stream: Iterator[dict[str, Any]], w: watch.Watch, stop_after: int | None = None
) -> list[tuple[str, dict[str, Any]]]:
    seen: list[tuple[str, dict[str, Any]]] = []
    for event in stream:
        seen.append((event["type"], event["raw_object"]))
        if stop_after is not None and len(seen) >= stop_after:
            w.stop()
    return seen


class Background:
    """Consume a watch on a thread, so the test thread can change things meanwhile."""

    def __init__(self, fn: Callable[[], Iterator[dict[str, Any]]]) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.error: BaseException | None = None
        self._fn = fn
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for event in self._fn():
                self.events.append((event["type"], event["raw_object"]))
        except BaseException as err:
            self.error = err

    def join(self, timeout: float = 5.0) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "watch did not end"


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


# -- lists and selectors ---------------------------------------------------------


def test_list_all_namespaces_and_one_namespace_by_node(
    server: FakeApiServer, v1: client.CoreV1Api
) -> None:
    server.add("Pod", pod("a", node="node-1"))
    server.add("Pod", pod("b", node="node-2"))
    server.add("Pod", pod("c", namespace="team-b", node="node-1"))

    everything = v1.list_pod_for_all_namespaces()
    assert [(p.metadata.namespace, p.metadata.name) for p in everything.items] == [
        (NS, "a"),
        (NS, "b"),
        ("team-b", "c"),
    ]
    assert everything.metadata.resource_version == server.resource_version == "3"

    on_node = v1.list_pod_for_all_namespaces(field_selector="spec.nodeName=node-1")
    assert [p.metadata.name for p in on_node.items] == ["a", "c"]
    in_ns = v1.list_namespaced_pod(NS, field_selector="spec.nodeName==node-1")
    assert [p.metadata.name for p in in_ns.items] == ["a"]


def test_list_items_omit_kind_like_a_real_server(server: FakeApiServer) -> None:
    server.add("Pod", pod("a"))
    with urllib.request.urlopen(f"{server.url}/api/v1/pods") as resp:
        body = json.load(resp)
    assert body["kind"] == "PodList"
    assert body["apiVersion"] == "v1"
    assert "kind" not in body["items"][0]
    with urllib.request.urlopen(f"{server.url}/api/v1/namespaces/{NS}/pods/a") as resp:
        assert json.load(resp)["kind"] == "Pod"


def test_field_selectors_not_equal_and_combined(
    server: FakeApiServer, v1: client.CoreV1Api
) -> None:
    server.add("Pod", pod("pending"))
    server.add("Pod", pod("running", status={"phase": "Running"}))
    server.add("Pod", pod("failed", node="node-2", status={"phase": "Failed"}))

    not_running = v1.list_namespaced_pod(NS, field_selector="status.phase!=Running")
    assert [p.metadata.name for p in not_running.items] == ["failed", "pending"]
    both = v1.list_namespaced_pod(NS, field_selector="status.phase!=Running,spec.nodeName=node-1")
    assert [p.metadata.name for p in both.items] == ["pending"]
    by_name = v1.list_pod_for_all_namespaces(
        field_selector=f"metadata.name=running,metadata.namespace={NS}"
    )
    assert [p.metadata.name for p in by_name.items] == ["running"]


def test_unknown_field_label_is_a_400_status(v1: client.CoreV1Api) -> None:
    with pytest.raises(client.ApiException) as caught:
        v1.list_pod_for_all_namespaces(field_selector="spec.hostname=x")
    assert caught.value.status == 400
    body = status_body(caught.value)
    assert body["kind"] == "Status"
    assert body["reason"] == "BadRequest"
    assert body["message"] == "field label not supported: spec.hostname"


def test_label_selectors(server: FakeApiServer, v1: client.CoreV1Api) -> None:
    server.add("Pod", pod("web", labels={"app": "web", "tier": "fe"}))
    server.add("Pod", pod("db", labels={"app": "db"}))
    server.add("Pod", pod("bare"))

    def names(selector: str) -> list[str | None]:
        return [p.metadata.name for p in v1.list_namespaced_pod(NS, label_selector=selector).items]

    assert names("app=web") == ["web"]
    assert names("app==db") == ["db"]
    assert names("app!=web") == ["bare", "db"]
    assert names("app=web,tier=fe") == ["web"]
    assert names("app in (web,db)") == ["db", "web"]
    assert names("tier") == ["web"]
    assert names("!app") == ["bare"]


def test_limit_and_continue_page_through_a_list(
    server: FakeApiServer, v1: client.CoreV1Api
) -> None:
    for i in range(5):
        server.add("Pod", pod(f"p{i}"))
    first = v1.list_namespaced_pod(NS, limit=2)
    assert [p.metadata.name for p in first.items] == ["p0", "p1"]
    assert first.metadata.remaining_item_count == 3
    second = v1.list_namespaced_pod(NS, limit=2, _continue=first.metadata._continue)
    third = v1.list_namespaced_pod(NS, limit=2, _continue=second.metadata._continue)
    assert [p.metadata.name for p in second.items + third.items] == ["p2", "p3", "p4"]
    assert not third.metadata._continue


# -- single objects ----------------------------------------------------------------


def test_create_get_delete(server: FakeApiServer, v1: client.CoreV1Api) -> None:
    created = v1.create_namespaced_pod(NS, pod("a"))
    assert created.metadata.uid
    assert created.metadata.creation_timestamp is not None
    assert created.metadata.resource_version == "1"
    assert created.status.phase == "Pending"

    got = v1.read_namespaced_pod("a", NS)
    assert got.metadata.uid == created.metadata.uid

    deleted = v1.delete_namespaced_pod("a", NS)
    assert deleted.metadata.name == "a"
    assert deleted.metadata.resource_version == "2"
    assert server.get("pods", NS, "a") is None

    with pytest.raises(client.ApiException) as caught:
        v1.read_namespaced_pod("a", NS)
    assert caught.value.status == 404
    assert status_body(caught.value) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'pods "a" not found',
        "reason": "NotFound",
        "details": {"name": "a", "kind": "pods"},
        "code": 404,
    }


def test_create_conflicts_and_validation(v1: client.CoreV1Api) -> None:
    v1.create_namespaced_pod(NS, pod("a"))
    with pytest.raises(client.ApiException) as dup:
        v1.create_namespaced_pod(NS, pod("a"))
    assert dup.value.status == 409
    assert status_body(dup.value)["reason"] == "AlreadyExists"
    assert status_body(dup.value)["message"] == 'pods "a" already exists'

    with pytest.raises(client.ApiException) as nameless:
        v1.create_namespaced_pod(NS, {"metadata": {}, "spec": {"containers": []}})
    assert nameless.value.status == 422
    body = status_body(nameless.value)
    assert body["reason"] == "Invalid"
    assert body["details"]["causes"][0]["field"] == "metadata.name"

    generated = v1.create_namespaced_pod(NS, {"metadata": {"generateName": "job-"}})
    assert generated.metadata.name.startswith("job-")
    assert len(generated.metadata.name) == len("job-") + 5


def test_hooks_raise_the_same_status_errors(server: FakeApiServer) -> None:
    with pytest.raises(ApiStatusError) as caught:
        server.delete("pods", NS, "missing")
    assert caught.value.code == 404
    with pytest.raises(ValueError, match="unknown resource"):
        server.add("deployments", pod("x"))


def test_patch_status_touches_only_status(server: FakeApiServer, v1: client.CoreV1Api) -> None:
    server.add("Pod", pod("a", status={"conditions": [{"type": "PodScheduled", "status": "True"}]}))
    patched = v1.patch_namespaced_pod_status(
        "a",
        NS,
        {
            "metadata": {"labels": {"ignored": "yes"}},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
        },
    )
    assert patched.status.phase == "Running"
    # The client sends dict bodies as strategic merge patches: conditions merge by type.
    assert {c.type for c in patched.status.conditions} == {"PodScheduled", "Ready"}
    assert patched.metadata.labels is None
    assert server.count("PATCH", "/api/v1/namespaces/team-a/pods/a/status") == 1


def test_main_resource_patch_keeps_status_and_noop_keeps_version(
    server: FakeApiServer, v1: client.CoreV1Api
) -> None:
    server.add("Pod", pod("a", status={"phase": "Running"}))
    patched = v1.patch_namespaced_pod(
        "a", NS, {"metadata": {"labels": {"x": "1"}}, "status": {"phase": "Failed"}}
    )
    assert patched.metadata.labels == {"x": "1"}
    assert patched.status.phase == "Running"
    again = v1.patch_namespaced_pod("a", NS, {"metadata": {"labels": {"x": "1"}}})
    assert again.metadata.resource_version == patched.metadata.resource_version

    json_patched = v1.patch_namespaced_pod(
        "a", NS, [{"op": "add", "path": "/metadata/labels/y", "value": "2"}]
    )
    assert json_patched.metadata.labels == {"x": "1", "y": "2"}


def test_update_with_stale_resource_version_conflicts(
    server: FakeApiServer, v1: client.CoreV1Api
) -> None:
    created = server.add("Pod", pod("a"))
    server.patch_status(NS, "a", {"phase": "Running"})
    with pytest.raises(client.ApiException) as caught:
        v1.replace_namespaced_pod("a", NS, created)
    assert caught.value.status == 409
    assert status_body(caught.value)["reason"] == "Conflict"


def test_events_by_involved_object(server: FakeApiServer, v1: client.CoreV1Api) -> None:
    target = server.add("Pod", pod("a"))
    uid = target["metadata"]["uid"]
    for reason, obj_uid in (("Pulled", uid), ("BackOff", uid), ("Pulled", "other")):
        v1.create_namespaced_event(
            NS,
            {
                "metadata": {"generateName": "a."},
                "involvedObject": {"kind": "Pod", "name": "a", "namespace": NS, "uid": obj_uid},
                "reason": reason,
                "type": "Warning" if reason == "BackOff" else "Normal",
            },
        )
    mine = v1.list_namespaced_event(NS, field_selector=f"involvedObject.uid={uid}")
    assert sorted(str(e.reason) for e in mine.items) == ["BackOff", "Pulled"]
    warnings = v1.list_event_for_all_namespaces(
        field_selector="involvedObject.name=a,involvedObject.kind=Pod,type=Warning,reason=BackOff"
    )
    assert len(warnings.items) == 1


def test_services_minimal(v1: client.CoreV1Api) -> None:
    v1.create_namespaced_service(
        NS, {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}
    )
    assert [s.metadata.name for s in v1.list_namespaced_service(NS).items] == ["web"]
    assert v1.read_namespaced_service("web", NS).spec.ports[0].port == 80
    v1.delete_namespaced_service("web", NS)
    assert v1.list_service_for_all_namespaces().items == []


# -- watches ---------------------------------------------------------------------------


def test_watch_from_resource_version_replays_exactly_the_later_events(
    server: FakeApiServer, v1: client.CoreV1Api
) -> None:
    server.add("Pod", pod("before"))
    start = server.resource_version
    server.add("Pod", pod("a"))
    server.patch_status(NS, "a", {"phase": "Running"})
    server.add("Pod", pod("other-ns", namespace="team-b"))
    server.delete("Pod", NS, "a")

    w = watch.Watch()
    seen = collect(
        w.stream(v1.list_namespaced_pod, NS, resource_version=start, timeout_seconds=5),
        w,
        stop_after=3,
    )
    assert [(kind, obj["metadata"]["name"]) for kind, obj in seen] == [
        ("ADDED", "a"),
        ("MODIFIED", "a"),
        ("DELETED", "a"),
    ]
    assert [obj["metadata"]["resourceVersion"] for _, obj in seen] == ["2", "3", "5"]
    assert seen[1][1]["kind"] == "Pod"


def test_watch_without_resource_version_starts_with_current_objects(
    server: FakeApiServer, v1: client.CoreV1Api
) -> None:
    server.add("Pod", pod("a"))
    server.add("Pod", pod("b", node="node-2"))
    w = watch.Watch()
    seen = collect(
        w.stream(v1.list_pod_for_all_namespaces, field_selector="spec.nodeName=node-1"),
        w,
        stop_after=1,
    )
    assert [(kind, obj["metadata"]["name"]) for kind, obj in seen] == [("ADDED", "a")]


def test_watch_delivers_live_changes(server: FakeApiServer, v1: client.CoreV1Api) -> None:
    w = watch.Watch()
    bg = Background(lambda: w.stream(v1.list_namespaced_pod, NS, timeout_seconds=5))
    wait_for(lambda: server.open_watches == 1)
    server.add("Pod", pod("late"))
    wait_for(lambda: len(bg.events) == 1)
    w.stop()
    bg.join()
    assert bg.events[0][0] == "ADDED"
    # Watch.stop() from another thread shuts the socket down under the
    # blocked reader; urllib3 reports that as a cut-off response.
    assert isinstance(bg.error, urllib3.exceptions.ProtocolError)


def test_watch_timeout_ends_the_stream_cleanly(server: FakeApiServer, v1: client.CoreV1Api) -> None:
    w = watch.Watch()
    started = time.monotonic()
    seen = collect(w.stream(v1.list_namespaced_pod, NS, timeout_seconds=1), w)
    elapsed = time.monotonic() - started
    assert seen == []
    assert 0.9 <= elapsed < 3
    wait_for(lambda: server.open_watches == 0)


def test_periodic_bookmarks() -> None:
    with FakeApiServer(bookmark_interval=0.1) as srv:
        srv.add("Pod", pod("a"))
        api_client = client.ApiClient(client.Configuration(host=srv.url))
        try:
            core = client.CoreV1Api(api_client)
            w = watch.Watch()
            seen = collect(
                w.stream(
                    core.list_namespaced_pod,
                    NS,
                    resource_version=srv.resource_version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=5,
                ),
                w,
                stop_after=1,
            )
            assert seen == [
                (
                    "BOOKMARK",
                    {"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}},
                )
            ]
            assert w.resource_version == "1"
        finally:
            api_client.close()


def test_send_bookmarks_hook(server: FakeApiServer, v1: client.CoreV1Api) -> None:
    server.add("Pod", pod("a"))
    w = watch.Watch()
    plain = watch.Watch()
    with_bookmarks = Background(
        lambda: w.stream(v1.list_namespaced_pod, NS, allow_watch_bookmarks=True, timeout_seconds=5)
    )
    without = Background(lambda: plain.stream(v1.list_namespaced_pod, NS, timeout_seconds=5))
    wait_for(lambda: server.open_watches == 2 and len(with_bookmarks.events) == 1)
    time.sleep(0.2)
    assert [kind for kind, _ in with_bookmarks.events] == ["ADDED"]
    server.send_bookmarks()
    wait_for(lambda: len(with_bookmarks.events) == 2)
    assert with_bookmarks.events[1] == (
        "BOOKMARK",
        {"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}},
    )
    # The drop is queued behind the bookmark, so both watches have handled it.
    server.drop_watches()
    with_bookmarks.join()
    without.join()
    assert [kind for kind, _ in without.events] == ["ADDED"]


def test_watch_from_compacted_version_raises_410(
    server: FakeApiServer, v1: client.CoreV1Api
) -> None:
    server.add("Pod", pod("a"))
    old = server.resource_version
    server.add("Pod", pod("b"))
    server.compact()
    server.clear_log()

    # With timeout_seconds the client does not retry: the ERROR event raises at once.
    w = watch.Watch()
    with pytest.raises(client.ApiException) as caught:
        collect(w.stream(v1.list_namespaced_pod, NS, resource_version=old, timeout_seconds=5), w)
    assert caught.value.status == 410
    assert caught.value.reason == "Expired: too old resource version: 1 (2)"
    assert server.count(path_prefix="/api/v1/namespaces", watch=True) == 1

    # Without it the client retries once from the same version, then raises.
    with pytest.raises(client.ApiException) as again:
        collect(w.stream(v1.list_namespaced_pod, NS, resource_version=old), w)
    assert again.value.status == 410
    assert server.count(path_prefix="/api/v1/namespaces", watch=True) == 3

    # The current version is still fine.
    w = watch.Watch()
    bg = Background(
        lambda: w.stream(
            v1.list_namespaced_pod, NS, resource_version=server.resource_version, timeout_seconds=5
        )
    )
    wait_for(lambda: server.open_watches == 1)
    server.add("Pod", pod("c"))
    wait_for(lambda: len(bg.events) == 1)
    server.drop_watches()
    bg.join()


def test_expired_watch_on_the_wire(server: FakeApiServer) -> None:
    server.add("Pod", pod("a"))
    server.add("Pod", pod("b"))
    server.compact()
    url = f"{server.url}/api/v1/pods?watch=true&resourceVersion=1"
    with urllib.request.urlopen(url) as resp:
        assert resp.status == 200
        lines = resp.read().splitlines()
    assert [json.loads(line) for line in lines] == [
        {
            "type": "ERROR",
            "object": {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": "too old resource version: 1 (2)",
                "reason": "Expired",
                "code": 410,
            },
        }
    ]


def test_max_history_expires_old_versions(v1: client.CoreV1Api) -> None:
    with FakeApiServer(bookmark_interval=0, max_history=3) as srv:
        for i in range(5):
            srv.add("Pod", pod(f"p{i}"))
        with urllib.request.urlopen(f"{srv.url}/api/v1/pods?watch=1&resourceVersion=1") as resp:
            assert json.loads(resp.readline())["object"]["code"] == 410
        url = f"{srv.url}/api/v1/pods?watch=1&resourceVersion=2&timeoutSeconds=0.3"
        with urllib.request.urlopen(url) as resp:
            names = [json.loads(line)["object"]["metadata"]["name"] for line in resp]
        assert names == ["p2", "p3", "p4"]


def test_selector_enter_and_leave(server: FakeApiServer, v1: client.CoreV1Api) -> None:
    server.add("Pod", pod("a"))
    start = server.resource_version
    server.patch_status(NS, "a", {"phase": "Running"})  # leaves status.phase!=Running
    server.patch_status(NS, "a", {"phase": "Failed"})  # enters again
    server.patch_status(NS, "a", {"reason": "Evicted"})  # stays in

    w = watch.Watch()
    seen = collect(
        w.stream(
            v1.list_namespaced_pod,
            NS,
            field_selector="status.phase!=Running",
            resource_version=start,
            timeout_seconds=5,
        ),
        w,
        stop_after=3,
    )
    assert [kind for kind, _ in seen] == ["DELETED", "ADDED", "MODIFIED"]
    leaving = seen[0][1]
    # The object that left is sent as it was before, at the new version.
    assert leaving["status"]["phase"] == "Pending"
    assert leaving["metadata"]["resourceVersion"] == "2"
    assert seen[1][1]["status"]["phase"] == "Failed"


def test_drop_watches_ends_the_stream_abruptly(server: FakeApiServer, v1: client.CoreV1Api) -> None:
    server.add("Pod", pod("a"))
    w = watch.Watch()
    bg = Background(lambda: w.stream(v1.list_namespaced_pod, NS, timeout_seconds=30))
    wait_for(lambda: len(bg.events) == 1 and server.open_watches == 1)
    assert server.drop_watches() == 1
    bg.join()
    # The stream is cut mid-body, which urllib3 reports rather than ending quietly.
    assert isinstance(bg.error, urllib3.exceptions.ProtocolError)
    assert server.open_watches == 0

    # The server keeps serving: a new watch (the reconnect) works.
    w = watch.Watch()
    seen = collect(
        w.stream(v1.list_namespaced_pod, NS, resource_version="0", timeout_seconds=5),
        w,
        stop_after=1,
    )
    assert seen[0][0] == "ADDED"


def test_watch_events_keep_order_under_concurrent_writers(
    server: FakeApiServer, v1: client.CoreV1Api
) -> None:
    w = watch.Watch()
    total = 4 * 25
    bg = Background(lambda: w.stream(v1.list_pod_for_all_namespaces, timeout_seconds=10))
    wait_for(lambda: server.open_watches == 1)

    def writer(n: int) -> None:
        for i in range(25):
            server.add("Pod", pod(f"w{n}-{i}"))

    writers = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    wait_for(lambda: len(bg.events) == total)
    server.drop_watches()
    bg.join()
    versions = [int(obj["metadata"]["resourceVersion"]) for _, obj in bg.events]
    assert versions == list(range(1, total + 1))


def test_send_initial_events_ends_with_a_marked_bookmark(
    server: FakeApiServer, v1: client.CoreV1Api
) -> None:
    server.add("Pod", pod("a"))
    w = watch.Watch()
    seen = collect(
        w.stream(
            v1.list_namespaced_pod,
            NS,
            send_initial_events=True,
            resource_version_match="NotOlderThan",
            allow_watch_bookmarks=True,
            timeout_seconds=5,
        ),
        w,
        stop_after=2,
    )
    assert [kind for kind, _ in seen] == ["ADDED", "BOOKMARK"]
    assert seen[1][1]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_raw_chunked_stream(server: FakeApiServer) -> None:
    server.add("Pod", pod("a"))
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("GET", f"/api/v1/namespaces/{NS}/pods?watch=true&timeoutSeconds=0.5")
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.getheader("Transfer-Encoding") == "chunked"
    assert resp.getheader("Content-Type") == "application/json"
    first = json.loads(resp.readline())
    assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "a")
    # A change made while the stream is open arrives before the stream ends.
    server.patch_status(NS, "a", {"phase": "Running"})
    second = json.loads(resp.readline())
    assert (second["type"], second["object"]["status"]["phase"]) == ("MODIFIED", "Running")
    assert resp.read() == b""  # the server's terminating chunk at the timeout
    # The connection survives a cleanly ended watch (keep-alive).
    conn.request("GET", "/healthz")
    assert conn.getresponse().read() == b"ok"
    conn.close()


def test_raw_chunk_framing(server: FakeApiServer) -> None:
    server.add("Pod", pod("a"))
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(
            b"GET /api/v1/pods?watch=1&timeoutSeconds=0.2 HTTP/1.1\r\nHost: x\r\n"
            b"Connection: close\r\n\r\n"
        )
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head
    size_line, _, rest = body.partition(b"\r\n")
    size = int(size_line, 16)
    assert json.loads(rest[:size])["type"] == "ADDED"
    assert rest[size:] == b"\r\n0\r\n\r\n"


# -- auth, discovery, errors, log --------------------------------------------------


def test_token_review(api: client.ApiClient, server: FakeApiServer) -> None:
    server.set_tokens(
        {
            "good": {"username": "system:serviceaccount:ops:bot", "uid": "u-1", "groups": ["ops"]},
            "revoked": None,
        }
    )
    authn = client.AuthenticationV1Api(api)
    review = authn.create_token_review({"spec": {"token": "good"}})
    assert review.status.authenticated is True
    assert review.status.user.username == "system:serviceaccount:ops:bot"
    assert review.status.user.uid == "u-1"
    assert review.status.user.groups == ["ops", "system:authenticated"]
    for token in ("revoked", "unknown"):
        denied = authn.create_token_review({"spec": {"token": token}})
        assert not denied.status.authenticated
        assert denied.status.error
    with pytest.raises(client.ApiException) as caught:
        authn.create_token_review({"spec": {"token": ""}})
    assert caught.value.status == 400


def test_subject_access_review_with_rules_and_callable(
    api: client.ApiClient, server: FakeApiServer
) -> None:
    authz = client.AuthorizationV1Api(api)

    def review(user: str, verb: str, subresource: str = "") -> Any:
        attrs = {"namespace": NS, "verb": verb, "resource": "pods", "subresource": subresource}
        return authz.create_subject_access_review(
            {"spec": {"user": user, "resourceAttributes": attrs}}
        )

    server.set_authorizer({("alice", "get", "pods", "log", "*"), ("bob", "*", "pods", "", NS)})
    answer = review("alice", "get", "log")
    assert answer.status.allowed is True
    assert answer.spec.resource_attributes.subresource == "log"
    assert review("alice", "get").status.allowed is False
    assert review("bob", "delete").status.allowed is True

    server.set_authorizer(lambda spec: (spec["user"] == "carol", "carol only"))
    assert review("carol", "get").status.reason == "carol only"
    assert review("alice", "get", "log").status.allowed is False


def test_required_bearer_token() -> None:
    with FakeApiServer(bookmark_interval=0, required_token="s3cret") as srv:
        anonymous = client.ApiClient(client.Configuration(host=srv.url))
        cfg = client.Configuration(host=srv.url, api_key={"BearerToken": "s3cret"})
        cfg.api_key_prefix = {"BearerToken": "Bearer"}
        authorised = client.ApiClient(cfg)
        try:
            with pytest.raises(client.ApiException) as caught:
                client.CoreV1Api(anonymous).list_pod_for_all_namespaces()
            assert caught.value.status == 401
            assert status_body(caught.value)["reason"] == "Unauthorized"
            assert client.CoreV1Api(authorised).list_pod_for_all_namespaces().items == []
            assert client.VersionApi(anonymous).get_code().git_version.startswith("v1.")
        finally:
            anonymous.close()
            authorised.close()


def test_discovery_and_health(api: client.ApiClient, server: FakeApiServer) -> None:
    assert client.CoreApi(api).get_api_versions().versions == ["v1"]
    names = {r.name for r in client.CoreV1Api(api).get_api_resources().resources}
    assert {"pods", "pods/status", "events", "services", "namespaces"} <= names
    groups = {g.name for g in client.ApisApi(api).get_api_versions().groups}
    # The groups a cluster serves and the lab does not are listed, so that
    # kubectl asks and reads why (lab.apiserver.unserved).
    assert {"authentication.k8s.io", "authorization.k8s.io", "apps", "batch"} <= groups
    assert client.VersionApi(api).get_code().major == "1"
    for path in ("/healthz", "/readyz"):
        with urllib.request.urlopen(server.url + path) as resp:
            assert resp.read() == b"ok"
    namespaces = client.CoreV1Api(api).list_namespace().items
    assert "default" in {ns.metadata.name for ns in namespaces}


def test_unknown_paths_and_methods(server: FakeApiServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("GET", "/api/v1/deployments")
    resp = conn.getresponse()
    assert resp.status == 404
    assert json.loads(resp.read())["reason"] == "NotFound"
    conn.request("POST", "/api/v1/pods", body=b"{}", headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 405
    assert json.loads(resp.read())["reason"] == "MethodNotAllowed"
    conn.close()


def test_oversized_body_is_413(server: FakeApiServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    body = b'{"metadata":{"name":"big"},"pad":"' + b"x" * (4 * 1024 * 1024) + b'"}'
    conn.request("POST", f"/api/v1/namespaces/{NS}/pods", body=body)
    resp = conn.getresponse()
    assert resp.status == 413
    assert json.loads(resp.read())["reason"] == "RequestEntityTooLarge"
    conn.close()
    assert server.get("pods", NS, "big") is None


def test_request_log_counts(server: FakeApiServer, v1: client.CoreV1Api) -> None:
    server.add("Pod", pod("a"))
    v1.list_pod_for_all_namespaces()
    v1.list_pod_for_all_namespaces(field_selector="spec.nodeName=node-1")
    v1.list_namespaced_pod(NS)
    w = watch.Watch()
    collect(w.stream(v1.list_pod_for_all_namespaces, timeout_seconds=5), w, stop_after=1)

    assert server.count("GET", "/api/v1/pods") == 2
    assert server.count("GET", "/api/v1/pods", watch=True) == 1
    assert server.count("GET", "/api/v1/", watch=None) == 4
    assert server.count(None, "", watch=None) == 4
    record = server.requests[1]
    assert record.query == {"fieldSelector": "spec.nodeName=node-1"}
    assert record.watch is False
    server.clear_log()
    assert server.requests == []


def test_stop_closes_open_watches() -> None:
    srv = FakeApiServer(bookmark_interval=0).start()
    port = srv.port
    api_client = client.ApiClient(client.Configuration(host=srv.url))
    try:
        w = watch.Watch()
        bg = Background(
            lambda: w.stream(
                client.CoreV1Api(api_client).list_namespaced_pod, NS, timeout_seconds=30
            )
        )
        wait_for(lambda: srv.open_watches == 1)
        srv.stop()
        bg.join()
        assert bg.error is not None
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1)
    finally:
        srv.stop()
        api_client.close()


def test_process_entry_point() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "lab.apiserver", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        with urllib.request.urlopen(url + "/readyz", timeout=5) as resp:
            assert resp.read() == b"ok"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
