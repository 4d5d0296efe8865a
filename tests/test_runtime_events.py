"""Which change source the node state uses per runtime, how it resubscribes, and
how the API server's news makes it look at once (a fake runtime, no root).

The real runtimes are in tests/test_runtime_matrix.py; these pin the rules:
never subscribe on containerd 1.7 (it would take kubelet's events), follow
the stream on containerd 2.x and CRI-O with a slow relist behind it,
resubscribe and relist when the stream breaks, treat UNIMPLEMENTED for an
optional call as an answer, and refresh at once when the API server names a
container or sandbox the snapshot does not hold.
"""

from __future__ import annotations

import asyncio
import re
from functools import partial
from typing import Any

import httpx
import pytest

from agent.api.app import create_app
from agent.cri import event_policy, major_minor
from agent.domain.kubemodel import ApiPod
from agent.domain.model import ContainerState, RuntimeInfo, RuntimeKind
from agent.kube.convert import pod_from_dict
from agent.services.node import NodeState
from tests.fake_runtime import FakeRuntime, fake_settings, running, until


def new_node(runtime: FakeRuntime, **settings: object) -> NodeState:
    return NodeState(fake_settings(**settings), runtime.connect)


def info(name: str, version: str) -> RuntimeInfo:
    return RuntimeInfo("unix:///x", name, version, "v1", RuntimeKind.from_runtime_name(name))


@pytest.mark.parametrize(
    ("name", "version", "subscribe"),
    [
        ("containerd", "1.6.20~ds1", True),  # asks, and is told UNIMPLEMENTED
        ("containerd", "v1.7.27", False),
        ("containerd", "1.7.0-rc.1", False),
        ("containerd", "v2.0.0", True),
        ("containerd", "v2.4.2", True),
        ("containerd", "devel", False),  # unreadable: could be 1.7
        ("cri-o", "1.34.0", True),
        ("cri-dockerd", "0.3.1", True),
    ],
)
def test_event_policy_by_runtime_and_version(name: str, version: str, subscribe: bool) -> None:
    policy = event_policy(info(name, version))
    assert policy.subscribe is subscribe
    if not subscribe:
        assert policy.reason is not None
        assert "1.7" in policy.reason
        assert "kubelet" in policy.reason


def test_major_minor() -> None:
    assert major_minor("v2.4.2") == (2, 4)
    assert major_minor("1.6.20~ds1-1") == (1, 6)
    assert major_minor("devel") is None


async def test_containerd_17_is_never_subscribed_and_node_says_why() -> None:
    runtime = FakeRuntime(runtime_version="v1.7.27", sandbox_metrics=False)
    sb = runtime.run_sandbox("web", "shop")
    app = runtime.run_container(sb.id, "app")
    node = new_node(runtime, relist_interval_seconds=0.05)
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(node.settings, node)), base_url="http://t"
    )
    async with running(node), http:
        await until(lambda: node.health.synced, what="first sync")
        runtime.exit_container(app.id)
        await until(
            lambda: node.snapshot.containers[app.id].state is ContainerState.EXITED,
            what="exit seen by relisting",
        )
        body = (await http.get("/v1/node")).json()["capabilities"]
        assert body["change_source"] == "relist"
        assert "one GetContainerEvents subscriber" in body["change_source_reason"]
        assert body["relist_interval_seconds"] == 0.05
        # UNIMPLEMENTED for an optional call is an answer, not an outage.
        assert body["optional_calls"] == {"ListPodSandboxMetrics": "unimplemented"}
        # The text form says as much as the JSON does.
        text = (await http.get("/v1/node?output=text")).text
        assert f"relist ({body['change_source_reason']})" in text
        assert re.search(r"^Relist every: +0\.05s$", text, re.MULTILINE), text
        assert "ListPodSandboxMetrics: unimplemented" in text
        assert node.health.connected
    assert runtime.count("GetContainerEvents") == 0


async def test_events_are_the_change_source_with_a_slow_relist_behind_them() -> None:
    runtime = FakeRuntime(runtime_version="v2.4.2")
    sb = runtime.run_sandbox("web", "shop")
    node = new_node(runtime, relist_interval_seconds=0.05, events_relist_interval_seconds=60)
    async with running(node):
        await until(lambda: node.health.change_source == "events", what="following events")
        assert node.health.change_source_reason is None
        assert node.relist_interval == 60
        lists = runtime.count("ListContainers")
        started = runtime.run_container(sb.id, "app")
        await until(lambda: started.id in node.snapshot.containers, what="event seen")
        assert node.snapshot.containers[started.id].pid == started.pid
        # One relist per burst of events, not one per interval.
        assert runtime.count("ListContainers") - lists <= 3
        assert node.events_received >= 2  # created, started
        assert node.optional_calls["ListPodSandboxMetrics"].startswith("available")
        http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(node.settings, node)), base_url="http://t"
        )
        async with http:
            body = (await http.get("/v1/node")).json()["capabilities"]
            text = (await http.get("/v1/node?output=text")).text
        assert f"events ({body['events_received']} received" in text
        assert f"broken {body['event_stream_breaks']} times" in text
        interval = f"{body['relist_interval_seconds']:g}s"
        assert re.search(rf"^Relist every: +{interval}$", text, re.MULTILINE), text
        assert f"ListPodSandboxMetrics: {body['optional_calls']['ListPodSandboxMetrics']}" in text


async def test_a_broken_stream_is_resubscribed_and_a_relist_catches_what_it_missed() -> None:
    runtime = FakeRuntime(runtime_version="v2.4.2")
    sb = runtime.run_sandbox("web", "shop")
    app = runtime.run_container(sb.id, "app")
    # Without events a change would take a minute: only the resubscription's
    # relist can show what happened while the stream was down.
    node = new_node(
        runtime,
        relist_interval_seconds=60,
        events_relist_interval_seconds=60,
        reconnect_min_seconds=0.2,
    )
    async with running(node):
        await until(lambda: node.health.change_source == "events", what="following events")
        runtime.break_event_streams()
        await until(lambda: node.health.change_source == "relist", what="stream broken")
        assert "resubscribing" in (node.health.change_source_reason or "")
        # Changed while no stream is open: no event will ever tell of it.
        assert runtime.open_streams == 0
        runtime.exit_container(app.id, exit_code=2)
        await until(lambda: runtime.open_streams == 1, what="resubscribed")
        await until(
            lambda: node.snapshot.containers[app.id].state is ContainerState.EXITED,
            what="missed exit seen after resubscribing",
        )
        await until(lambda: node.health.change_source == "events", what="events again")
        assert node.event_stream_breaks == 1
        assert node.event_stream_resumes == 1
        assert node.health.connected
    # The same connection throughout: a broken stream is not an outage.
    assert len(runtime.clients) == 1


async def test_crio_without_pod_events_relists_and_says_so() -> None:
    runtime = FakeRuntime(runtime_name="cri-o", runtime_version="1.34.0", events="silent")
    runtime.run_sandbox("web", "shop")
    node = new_node(runtime)
    async with running(node):
        await until(lambda: node.health.synced, what="first sync")
        await until(lambda: node.health.change_source_reason != "subscribing", what="answer")
        assert node.health.change_source == "relist"
        assert "without events" in (node.health.change_source_reason or "")
    assert runtime.count("GetContainerEvents") == 1


def api_pod(name: str, uid: str, statuses: list[dict[str, Any]], **status: Any) -> ApiPod:
    return pod_from_dict(
        {
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "shop", "uid": uid},
            "spec": {"containers": [{"name": s["name"], "image": "busybox"} for s in statuses]},
            "status": {"phase": "Running", "containerStatuses": statuses, **status},
        }
    )


def running_status(name: str, container_id: str) -> dict[str, Any]:
    return {
        "name": name,
        "containerID": f"containerd://{container_id}",
        "ready": True,
        "restartCount": 0,
        "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
    }


async def test_the_api_naming_an_unknown_container_refreshes_at_once() -> None:
    runtime = FakeRuntime(events="unimplemented")
    sb = runtime.run_sandbox("web", "shop", uid="uid-web")
    # A relist a minute away: only the API server's news explains a quick look.
    node = new_node(runtime, relist_interval_seconds=60)
    async with running(node):
        await until(lambda: node.health.synced, what="first sync")
        refreshes = node.refresh_count
        app = runtime.run_container(sb.id, "app")
        assert app.id not in node.snapshot.containers
        pod = api_pod("web", "uid-web", [running_status("app", app.id)])
        assert node.expect_pod(pod) is True
        await node.settle(2.0)
        assert node.snapshot.containers[app.id].pid == app.pid
        assert node.refresh_count == refreshes + 1

        # Told again about what it already holds: nothing to do.
        assert node.expect_pod(pod) is False
        # An ID the runtime never had is looked for once, not on every update.
        bogus = api_pod("web", "uid-web", [running_status("app", "f" * 64)])
        assert node.expect_pod(bogus) is True
        await node.settle(2.0)
        assert node.expect_pod(bogus) is False
        assert node.refresh_count == refreshes + 2


async def test_a_running_container_the_snapshot_has_only_created_is_looked_at() -> None:
    runtime = FakeRuntime(events="unimplemented")
    sb = runtime.run_sandbox("web", "shop", uid="uid-web")
    created = runtime.create_container(sb.id, "app")
    node = new_node(runtime, relist_interval_seconds=60)
    async with running(node):
        await until(lambda: created.id in node.snapshot.containers, what="first sync")
        assert node.snapshot.containers[created.id].state is ContainerState.CREATED
        started = runtime.start_container(created.id)
        assert node.expect_pod(api_pod("web", "uid-web", [running_status("app", started.id)]))
        await node.settle(2.0)
        seen = node.snapshot.containers[created.id]
        assert (seen.state, seen.pid) == (ContainerState.RUNNING, started.pid)


async def test_a_pod_view_asked_for_during_a_start_waits_for_that_refresh() -> None:
    runtime = FakeRuntime(events="unimplemented")
    sb = runtime.run_sandbox("web", "shop", uid="uid-web")
    node = new_node(runtime, relist_interval_seconds=60, pod_view_wait_seconds=2.0)
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(node.settings, node)), base_url="http://t"
    )
    async with running(node), http:
        await until(lambda: node.health.synced, what="first sync")
        app = runtime.run_container(sb.id, "app")
        # The pod watch delivers the API's news; the view asked right after
        # it must not show the container without its process.
        node.expect_pod(api_pod("web", "uid-web", [running_status("app", app.id)]))
        body = (await http.get("/v1/pods/shop/web")).json()
        (container,) = body["containers"]
        assert (container["id"], container["pid"]) == (app.id, app.pid)


async def test_a_sandbox_the_api_implies_is_looked_for() -> None:
    runtime = FakeRuntime(events="unimplemented")
    node = new_node(runtime, relist_interval_seconds=60)
    async with running(node):
        await until(lambda: node.health.synced, what="first sync")
        sb = runtime.run_sandbox("web", "shop", uid="uid-web")
        app = runtime.run_container(sb.id, "app")
        pod = api_pod("web", "uid-web", [running_status("app", app.id)], podIP="10.88.0.9")
        assert node.expect_pod(pod)
        await node.settle(2.0)
        assert sb.id in node.snapshot.sandboxes
        assert node.snapshot.sandboxes[sb.id].pause_pid == sb.pause_pid


async def test_events_can_be_turned_off_and_the_node_says_so() -> None:
    runtime = FakeRuntime(runtime_version="v2.4.2")
    runtime.run_sandbox("web", "shop")
    node = new_node(runtime, follow_container_events=False)
    async with running(node):
        await until(lambda: node.health.synced, what="first sync")
        assert node.health.change_source == "relist"
        assert "off by configuration" in (node.health.change_source_reason or "")
    assert runtime.count("GetContainerEvents") == 0


async def test_a_change_the_runtime_does_not_announce_is_seen_soon_after_the_last_event() -> None:
    runtime = FakeRuntime(runtime_version="v2.4.2")
    sb = runtime.run_sandbox("web", "shop")
    app = runtime.run_container(sb.id, "app")
    # A relist a minute away: only the follow-ups after an event explain a quick update.
    node = new_node(runtime, relist_interval_seconds=60, events_relist_interval_seconds=60)
    async with running(node):
        await until(lambda: node.health.change_source == "events", what="following events")
        await until(lambda: app.id in node.snapshot.containers, what="container seen")
        # As CRI-O removes a pod: the container's removal is announced, the
        # sandbox's (gone a moment later) is not.
        runtime.remove_container(app.id)
        await asyncio.sleep(0.03)
        del runtime.sandboxes[sb.id]
        await until(lambda: sb.id not in node.snapshot.sandboxes, within=1.5, what="sandbox gone")


async def test_the_loop_stops_when_cancelled_as_it_wakes() -> None:
    # Events and pidfds wake the loop often; a cancellation landing with a
    # wake-up must still stop it (Python 3.11's wait_for could swallow it).
    for _ in range(60):
        runtime = FakeRuntime(events="unimplemented")
        runtime.run_sandbox("web", "shop")
        node = new_node(runtime, relist_interval_seconds=60)
        task = asyncio.create_task(node.run())
        await until(partial(synced, node), what="first sync")
        asyncio.get_running_loop().call_soon(node.request_refresh)
        await asyncio.sleep(0)
        node.request_refresh()
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=2)
        assert done, "the refresh loop went on after it was cancelled"


def synced(node: NodeState) -> bool:
    return node.health.synced
