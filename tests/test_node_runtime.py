"""The node state's refresh loop against a fake runtime that goes away, slows down and streams.

The loop must answer 503 (the agent's ``RuntimeUnavailable``, saying since
when) while the runtime is away and reconnect by itself; use the container
event stream where the runtime has one and relist where it has not; and never
make a reader wait on the runtime.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime

import grpc
import httpx
import pytest

from agent import host
from agent.api.app import create_app
from agent.domain.model import Container, ContainerState
from agent.errors import RuntimeUnavailable
from agent.services.node import NodeState
from tests.fake_runtime import FAKE_ENDPOINT, FakeRuntime, fake_settings, running, until


def new_node(runtime: FakeRuntime, **settings: object) -> NodeState:
    return NodeState(fake_settings(**settings), runtime.connect)


def unavailable(node: NodeState) -> RuntimeUnavailable:
    """The error ``live_snapshot`` raises now; fails the test if it answers."""
    with pytest.raises(RuntimeUnavailable) as caught:
        node.live_snapshot()
    return caught.value


async def test_runtime_going_away_answers_503_since_then_and_reconnects() -> None:
    runtime = FakeRuntime()
    sb = runtime.run_sandbox("web", "shop")
    app = runtime.run_container(sb.id, "app")
    early = runtime.run_container(sb.id, "early")
    doomed = runtime.run_sandbox("doomed", "shop")
    node = new_node(runtime)
    heard: list[str] = []
    node.add_exit_listener(lambda c: heard.append(c.id))
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(node.settings, node)), base_url="http://t"
    )
    async with running(node), http:
        await until(lambda: node.health.synced, what="first sync")
        assert node.live_snapshot().containers[app.id].pid == app.pid
        client = node.client
        assert client is not None
        assert await client.image_present("docker.io/library/busybox:latest")
        runtime.exit_container(early.id)
        await until(lambda: heard == [early.id], what="early exit heard")

        went_away = datetime.now(UTC)
        runtime.go_away(details="connect: connection refused")
        await until(lambda: not node.health.connected, what="outage noticed")
        first_since = node.health.since
        assert node.client is None
        # Reconnect attempts keep failing while it is away.
        attempts = len(runtime.clients)
        await until(lambda: len(runtime.clients) >= attempts + 3, what="reconnect attempts")
        error = unavailable(node)
        assert "UNAVAILABLE" in error.message
        assert "connection refused" in error.message
        assert error.detail["endpoint"] == FAKE_ENDPOINT
        since = datetime.fromisoformat(str(error.detail["since"]))
        assert went_away <= since <= datetime.now(UTC)
        # The retries fail on another call (Version, not the relist) than the
        # first failure did; it is still the same outage.
        assert since == first_since

        response = await http.get("/v1/containers")
        assert response.status_code == 503
        body = response.json()
        assert body["detail"]["since"] == error.detail["since"]
        assert "connection refused" in body["message"]

        # More failed attempts for the same reason do not move "since".
        attempts = len(runtime.clients)
        await until(lambda: len(runtime.clients) >= attempts + 2, what="more attempts")
        assert unavailable(node).detail["since"] == error.detail["since"]

        # What happens while the agent cannot see is there once it can.
        runtime.exit_container(app.id, exit_code=1)
        runtime.remove_sandbox(doomed.id)
        newcomer = runtime.run_sandbox("newcomer", "shop")
        runtime.come_back()
        await until(lambda: node.health.synced, what="reconnected")

        snap = node.live_snapshot()
        assert snap.containers[app.id].state is ContainerState.EXITED
        assert snap.containers[app.id].exit_code == 1
        assert doomed.id not in snap.sandboxes
        assert newcomer.id in snap.sandboxes
        assert node.health.reason is None
        response = await http.get("/v1/containers")
        assert response.status_code == 200
        assert [c["state"] for c in response.json()["items"]] == ["exited", "exited"]
        # Statuses are fetched afresh after an outage; each connection was closed.
        assert runtime.status_calls(sb.id) == [True, True]
        assert runtime.status_calls(early.id) == [True, True, True]
        # The exit that happened while away is heard; the one heard before is not again.
        assert heard == [early.id, app.id]
    assert all(c.closed for c in runtime.clients)
    assert runtime.calls_after_close == 0


async def test_a_call_past_its_deadline_is_an_outage_until_the_runtime_answers_in_time() -> None:
    runtime = FakeRuntime()
    sb = runtime.run_sandbox("web", "shop")
    node = new_node(runtime, cri_timeout_seconds=0.1)
    async with running(node):
        await until(lambda: node.health.synced, what="first sync")
        runtime.slow("ListContainers", 0.5)
        await until(lambda: not node.health.connected, what="deadline noticed")
        error = unavailable(node)
        assert "DEADLINE_EXCEEDED" in error.message
        assert "ListContainers" in error.message

        runtime.slow("ListContainers", 0.02)  # slow, but within the deadline
        await until(lambda: node.health.synced, what="reconnected")
        assert sb.id in node.live_snapshot().sandboxes


async def test_a_call_answered_with_an_error_reconnects(caplog: pytest.LogCaptureFixture) -> None:
    runtime = FakeRuntime()
    sb = runtime.run_sandbox("web", "shop")
    node = new_node(runtime, reconnect_min_seconds=0.2, reconnect_max_seconds=0.4)
    caplog.set_level(logging.WARNING, logger="agent.services.node")
    async with running(node):
        await until(lambda: node.health.synced, what="first sync")
        runtime.fail("ListContainers", grpc.StatusCode.INTERNAL, "boltdb: bad page", times=2)
        await until(lambda: not node.health.connected, what="failure noticed")
        error = unavailable(node)
        assert "INTERNAL" in error.message
        assert "boltdb: bad page" in error.message
        await until(lambda: node.health.synced, what="reconnected")
        assert sb.id in node.live_snapshot().sandboxes
    # One connection per failure, then one that works.
    assert len(runtime.clients) == 3
    assert any("runtime answered INTERNAL to ListContainers" in r.message for r in caplog.records)


async def test_reads_do_not_wait_on_a_slow_runtime() -> None:
    runtime = FakeRuntime(events="unimplemented")
    sb = runtime.run_sandbox("web", "shop")
    app = runtime.run_container(sb.id, "app")
    node = new_node(runtime, relist_interval_seconds=0.02)
    async with running(node):
        await until(lambda: node.health.synced, what="first sync")
        before = node.live_snapshot()
        runtime.slow("ContainerStatus", 0.6)
        runtime.exit_container(app.id)
        await until(lambda: runtime.count("ContainerStatus") == 2, what="a status call in flight")

        # Answered from the last snapshot while the refresh waits on the runtime.
        during = node.live_snapshot()
        assert during is before
        assert during.containers[app.id].state is ContainerState.RUNNING

        after = await node.wait_for_change(before.version, within=5)
        assert after.containers[app.id].state is ContainerState.EXITED


async def test_events_drive_refreshes_where_the_runtime_streams_them() -> None:
    runtime = FakeRuntime(events="stream")
    sb = runtime.run_sandbox("web", "shop")
    app = runtime.run_container(sb.id, "app")
    # Relisting alone would take a minute: only the event can explain a quick update.
    node = new_node(runtime, relist_interval_seconds=60)
    heard: list[Container] = []
    node.add_exit_listener(heard.append)
    async with running(node):
        await until(lambda: node.health.synced and runtime.open_streams == 1, what="streaming")
        version = node.snapshot.version

        runtime.exit_container(app.id, exit_code=3)
        snap = await node.wait_for_change(version, within=5)

        assert snap.containers[app.id].state is ContainerState.EXITED
        assert node.health.change_source == "events"
        assert [(c.id, c.exit_code) for c in heard] == [(app.id, 3)]
        started = runtime.run_container(sb.id, "app")
        await until(lambda: started.id in node.snapshot.containers, within=5, what="new container")
        assert node.snapshot.containers[started.id].pid == started.pid
    assert runtime.count("ListContainers") <= 4


@pytest.mark.parametrize(
    "events",
    [
        pytest.param("unimplemented", id="containerd-1.6"),
        pytest.param("silent", id="cri-o-without-pod-events"),
    ],
)
async def test_relisting_sees_changes_where_the_runtime_has_no_event_stream(events: str) -> None:
    runtime = FakeRuntime(events="unimplemented" if events == "unimplemented" else "silent")
    sb = runtime.run_sandbox("web", "shop")
    app = runtime.run_container(sb.id, "app")
    node = new_node(runtime, relist_interval_seconds=0.05)
    heard: list[Container] = []
    node.add_exit_listener(heard.append)
    async with running(node):
        await until(lambda: node.health.synced, what="first sync")
        runtime.exit_container(app.id, exit_code=1)
        await until(
            lambda: node.snapshot.containers[app.id].state is ContainerState.EXITED,
            within=5,
            what="exit seen by relisting",
        )
        assert node.health.change_source == "relist"
        assert node.health.connected
        assert [c.id for c in heard] == [app.id]
    # Asked once per connection, not again on every relist.
    assert runtime.count("GetContainerEvents") == len(runtime.clients) == 1


async def test_a_broken_event_stream_falls_back_to_relisting_then_resubscribes() -> None:
    runtime = FakeRuntime(events="stream")
    sb = runtime.run_sandbox("web", "shop")
    app = runtime.run_container(sb.id, "app")
    node = new_node(runtime, relist_interval_seconds=0.1)
    async with running(node):
        await until(lambda: node.health.synced and runtime.open_streams == 1, what="streaming")
        side = runtime.run_container(sb.id, "side")
        await until(lambda: node.health.change_source == "events", within=5, what="events")
        await until(lambda: side.id in node.snapshot.containers, within=5, what="side seen")

        runtime.break_event_streams()
        await until(lambda: node.health.change_source == "relist", within=5, what="fallback")
        runtime.exit_container(app.id)
        await until(
            lambda: node.snapshot.containers[app.id].state is ContainerState.EXITED,
            within=5,
            what="exit seen by relisting",
        )
        assert node.health.connected
        assert node.live_snapshot().containers[app.id].exit_code == 0
        await until(lambda: runtime.open_streams == 1, within=5, what="resubscribed")
        await until(lambda: node.health.change_source == "events", within=5, what="events again")
    assert len(runtime.clients) == 1


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


async def test_a_watched_process_exiting_wakes_the_loop_without_events(
    sleeper: subprocess.Popen[bytes],
) -> None:
    reason = host.pidfd_unavailable()
    if reason is not None:
        pytest.skip(f"no pidfds here: {reason}")
    runtime = FakeRuntime(events="unimplemented")
    sb = runtime.run_sandbox("web", "shop")
    app = runtime.create_container(sb.id, "app")
    runtime.start_container(app.id, pid=sleeper.pid)
    node = new_node(runtime, relist_interval_seconds=60)
    async with running(node):
        await until(lambda: node.health.synced, what="first sync")
        version = node.snapshot.version
        # The runtime records the exit; only the pidfd can tell the loop before a minute.
        runtime.exit_container(app.id, exit_code=137, reason="Error")
        sleeper.kill()
        snap = await node.wait_for_change(version, within=5)
        assert snap.containers[app.id].state is ContainerState.EXITED
        assert snap.containers[app.id].exit_code == 137
        assert node.health.change_source == "relist"
