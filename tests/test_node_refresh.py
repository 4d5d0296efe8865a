"""The node state's refresh against a fake runtime: what a relist adds, changes and removes.

No root and no runtime needed: ``FakeRuntime`` speaks the same ``RuntimeClient``
protocol as the CRI client, and answers the list calls without what only a
status call tells (PIDs, exit codes), as containerd does.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest

from agent import host
from agent.domain.model import Container, ContainerState, SandboxState
from agent.services.node import NodeState
from tests.fake_runtime import FAKE_ENDPOINT, FakeRuntime, fake_settings, running, until


def new_node(runtime: FakeRuntime, **settings: object) -> NodeState:
    return NodeState(fake_settings(**settings), runtime.connect)


async def test_first_refresh_adds_everything_and_fetches_each_status_once() -> None:
    runtime = FakeRuntime()
    sb = runtime.run_sandbox("web", "shop")
    app = runtime.run_container(sb.id, "app")
    node = new_node(runtime)
    client = runtime.connect(FAKE_ENDPOINT, node.settings)

    change = await node.refresh_once(client)

    assert change is not None
    assert sorted(change.added) == sorted([sb.id, app.id])
    assert change.removed == change.changed == ()
    snap = node.snapshot
    assert snap.version == change.version == 1
    # What only the verbose status tells is there: the list calls do not carry it.
    assert snap.sandboxes[sb.id].pause_pid == sb.pause_pid is not None
    assert snap.sandboxes[sb.id].network_namespace == f"/proc/{sb.pause_pid}/ns/net"
    seen = snap.containers[app.id]
    assert seen.pid == app.pid is not None
    assert seen.started_at == app.started_at
    assert seen.log_path == app.log_path
    assert seen.pod == sb.pod
    assert runtime.status_calls(sb.id) == [True]
    assert runtime.status_calls(app.id) == [True]

    # Relists where nothing changed: no status call, no new snapshot.
    for _ in range(3):
        assert await node.refresh_once(client) is None
    assert node.snapshot is snap
    assert node.refresh_count == 4
    assert runtime.count("ListPodSandbox") == runtime.count("ListContainers") == 4
    assert runtime.status_calls(sb.id) == [True]
    assert runtime.status_calls(app.id) == [True]
    assert node.status_calls == 2


async def test_relist_diff_names_added_changed_and_removed() -> None:
    runtime = FakeRuntime()
    sb = runtime.run_sandbox("web", "shop")
    app = runtime.run_container(sb.id, "app")
    sidecar = runtime.create_container(sb.id, "sidecar")
    other = runtime.run_sandbox("db", "shop")
    node = new_node(runtime)
    client = runtime.connect(FAKE_ENDPOINT, node.settings)
    await node.refresh_once(client)
    assert node.snapshot.containers[sidecar.id].state is ContainerState.CREATED
    assert node.snapshot.containers[sidecar.id].pid is None

    runtime.exit_container(app.id, exit_code=2)
    started = runtime.start_container(sidecar.id)
    late = runtime.create_container(sb.id, "late")
    change = await node.refresh_once(client)

    assert change is not None
    assert change.added == (late.id,)
    assert sorted(change.changed) == sorted([app.id, sidecar.id])
    assert change.removed == ()
    snap = node.snapshot
    exited = snap.containers[app.id]
    assert exited.state is ContainerState.EXITED
    assert (exited.exit_code, exited.reason, exited.pid) == (2, "Error", None)
    assert exited.finished_at is not None
    assert snap.containers[sidecar.id].state is ContainerState.RUNNING
    assert snap.containers[sidecar.id].pid == started.pid is not None
    # A changed state is asked about again; an unchanged sandbox is not.
    assert runtime.status_calls(app.id) == [True, True]
    assert runtime.status_calls(sidecar.id) == [True, True]
    assert runtime.status_calls(sb.id) == [True]

    runtime.stop_sandbox(other.id)
    change = await node.refresh_once(client)
    assert change is not None
    assert change.changed == (other.id,)
    assert node.snapshot.sandboxes[other.id].state is SandboxState.NOTREADY
    assert node.snapshot.sandboxes[other.id].pause_pid is None

    runtime.remove_sandbox(sb.id)
    change = await node.refresh_once(client)
    assert change is not None
    assert sorted(change.removed) == sorted([sb.id, app.id, sidecar.id, late.id])
    assert change.added == change.changed == ()
    assert list(node.snapshot.sandboxes) == [other.id]
    assert node.snapshot.containers == {}
    assert change.version == node.snapshot.version == 4


async def test_an_object_gone_between_list_and_status_is_left_out_until_listed_again() -> None:
    runtime = FakeRuntime()
    sb = runtime.run_sandbox("web", "shop")
    app = runtime.run_container(sb.id, "app")
    node = new_node(runtime)
    client = runtime.connect(FAKE_ENDPOINT, node.settings)
    runtime.fail("ContainerStatus", grpc.StatusCode.NOT_FOUND, "container not found")

    change = await node.refresh_once(client)

    assert change is not None
    assert change.added == (sb.id,)
    assert app.id not in node.snapshot.containers
    change = await node.refresh_once(client)
    assert change is not None
    assert change.added == (app.id,)
    assert node.snapshot.containers[app.id].pid == app.pid


async def test_exit_listeners_hear_each_exit_once_and_a_failing_one_stops_no_other() -> None:
    runtime = FakeRuntime()
    sb = runtime.run_sandbox("web", "shop")
    app = runtime.run_container(sb.id, "app")
    done_before = runtime.run_container(sb.id, "init")
    runtime.exit_container(done_before.id)
    node = new_node(runtime)
    client = runtime.connect(FAKE_ENDPOINT, node.settings)
    heard: list[Container] = []

    def broken(container: Container) -> None:
        raise ValueError("listener bug")

    node.add_exit_listener(broken)
    node.add_exit_listener(heard.append)

    # Exits that happened before the agent looked are history, not news.
    await node.refresh_once(client)
    assert heard == []

    runtime.exit_container(app.id, exit_code=137, reason="OOMKilled")
    await node.refresh_once(client)
    assert [(c.id, c.exit_code, c.reason) for c in heard] == [(app.id, 137, "OOMKilled")]
    assert heard[0].log_path == app.log_path

    # Still exited: not announced again, even when asked about again after a restart.
    runtime.start_container(runtime.create_container(sb.id, "app", attempt=1).id)
    await node.refresh_once(client)
    await node.refresh_once(client)
    assert len(heard) == 1


def _fake_proc(root: Path, pids: dict[str, int]) -> Path:
    """A procfs with one main process per container ID, each in its kubepods cgroup."""
    root.mkdir()
    (root / "stat").write_text(f"cpu  1 2 3 4\nbtime {int(time.time()) - 3600}\n")
    for object_id, pid in pids.items():
        proc = root / str(pid)
        proc.mkdir()
        (proc / "cgroup").write_text(
            f"0::/kubepods/besteffort/pod0b5c7d3e-1111-2222-3333-444455556666/{object_id}\n"
        )
        fields = ["S", "1", *["0"] * 17, "360000", *["0"] * 5]
        (proc / "stat").write_bytes(f"{pid} (sleep) {' '.join(fields)}\n".encode())
    return root


async def test_a_cold_start_takes_pids_from_one_proc_scan_then_fills_verbose_once(
    tmp_path: Path,
) -> None:
    runtime = FakeRuntime()
    sb = runtime.run_sandbox("web", "shop")
    made = [runtime.run_container(sb.id, name) for name in ("a", "b", "c")]
    assert sb.pause_pid is not None
    pids = {sb.id: sb.pause_pid, **{c.id: c.pid for c in made if c.pid is not None}}
    proc_root = _fake_proc(tmp_path / "proc", pids)
    node = new_node(runtime, verbose_batch_limit=2, proc_root=proc_root)
    client = runtime.connect(FAKE_ENDPOINT, node.settings)

    await node.refresh_once(client)

    # Four new objects are more than the batch limit: plain statuses, PIDs from /proc.
    snap = node.snapshot
    assert snap.sandboxes[sb.id].pause_pid == sb.pause_pid
    assert {c.id: c.pid for c in snap.containers.values()} == {c.id: c.pid for c in made}
    assert all(c.namespaces == () for c in snap.containers.values())
    for object_id in pids:
        assert runtime.status_calls(object_id) == [False]

    # The loop fills in the verbose details in the background, once per object.
    async with running(node):
        await until(
            lambda: (
                all(c.namespaces for c in node.snapshot.containers.values())
                and node.snapshot.sandboxes[sb.id].namespaces
            ),
            what="verbose details filled in",
        )
        await asyncio.sleep(0.2)  # a few more relists
    for c in made:
        assert node.snapshot.containers[c.id].mounts == c.mounts
        assert node.snapshot.containers[c.id].pid == c.pid
    assert node.snapshot.sandboxes[sb.id].namespaces == sb.namespaces
    assert node.snapshot.sandboxes[sb.id].pause_pid == sb.pause_pid
    for object_id in pids:
        assert runtime.status_calls(object_id) == [False, True]


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


async def test_cri_o_pid_is_trusted_only_for_a_process_started_with_the_container(
    sleeper: subprocess.Popen[bytes],
) -> None:
    # CRI-O keeps reporting a PID after the process is gone, and the PID may be
    # reused: the process must have started when the container did.
    runtime = FakeRuntime(runtime_name="cri-o", runtime_version="1.30.4")
    sb = runtime.run_sandbox("web", "shop")
    sleeper_started = host.process_start_time(sleeper.pid)
    assert sleeper_started is not None
    real = runtime.create_container(sb.id, "real")
    runtime.start_container(real.id, pid=sleeper.pid, started_at=sleeper_started)
    recycled = runtime.create_container(sb.id, "recycled")
    # This test's own process started long before "now", when the container starts.
    runtime.start_container(recycled.id, pid=os.getpid(), started_at=datetime.now(UTC))
    node = new_node(runtime)
    client = runtime.connect(FAKE_ENDPOINT, node.settings)

    await node.refresh_once(client)

    assert node.snapshot.containers[real.id].pid == sleeper.pid
    assert node.snapshot.containers[recycled.id].pid is None
    assert node.snapshot.containers[recycled.id].state is ContainerState.RUNNING
