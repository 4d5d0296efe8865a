"""The agent's inventory against each real runtime: its view must equal the runtime's.

Runs against containerd 1.6, containerd 2.x and CRI-O (the ``cri_runtime``
matrix). Pods are created through CRI exactly as kubelet creates them; the
agent is the real app served over real HTTP. Every PID the agent reports is
checked against /proc. Where the runtimes differ (CRI-O runs ordinary pods
without a pause process; containerd 1.6 has no event stream) the test says
what each must show.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.cri.verbose import NO_INFRA_CONTAINER
from agent.settings import Settings
from cri_proto import api_pb2
from lab.cri_pods import ContainerDef, CriPodDriver, PodHandle
from lab.runtimes import PrivateRuntime, RuntimeFacts
from tests.agent_server import RunningAgent, running_agent

pytestmark = pytest.mark.containerd

BUSYBOX = "docker.io/library/busybox:latest"
STATE_NAMES = {0: "created", 1: "running", 2: "exited", 3: "unknown"}


@pytest.fixture(scope="module")
def agent(cri_runtime: PrivateRuntime) -> Iterator[RunningAgent]:
    settings = Settings(
        cri_endpoint=cri_runtime.endpoint,
        node_name="lab-node",
        relist_interval_seconds=0.5,
        reconnect_min_seconds=0.1,
        reconnect_max_seconds=0.5,
    )
    with running_agent(settings) as running:
        running.wait_for(lambda a: a.get("/readyz").status_code == 200)
        yield running


@pytest.fixture
def two_pods(runtime_pod: Callable[..., PodHandle]) -> list[PodHandle]:
    web = runtime_pod(
        "web",
        "shop",
        containers=[
            ContainerDef("app", BUSYBOX, command=["sh", "-c", "echo started; sleep 3600 & wait"]),
            ContainerDef("sidecar", BUSYBOX, command=["sleep", "3600"]),
        ],
        labels={"app": "web"},
    )
    hostnet = runtime_pod(
        "node-agent",
        "infra",
        containers=[ContainerDef("main", BUSYBOX, command=["sleep", "3600"])],
        host_network=True,
    )
    return [web, hostnet]


def containers_of(agent: RunningAgent, pod: str) -> list[dict[str, object]]:
    response = agent.get("/v1/containers", params={"pod": pod})
    assert response.status_code == 200, response.text
    return response.json()["items"]  # type: ignore[no-any-return]


def wait_running(agent: RunningAgent, handle: PodHandle) -> list[dict[str, object]]:
    want = set(handle.container_ids.values())

    def ready(a: RunningAgent) -> list[dict[str, object]] | None:
        items = [c for c in containers_of(a, handle.name) if c["id"] in want]
        if len(items) == len(want) and all(c["state"] == "running" and c["pid"] for c in items):
            return items
        return None

    return agent.wait_for(ready)  # type: ignore[no-any-return]


def netns(pid: int) -> int:
    """The inode of the process's network namespace."""
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def pod_netns(sandbox: dict[str, object], pause_pid: int | None) -> int:
    """The pod's network namespace: the pause process's, or the path CRI-O pinned it at."""
    if pause_pid is not None:
        return netns(pause_pid)
    return os.stat(str(sandbox["network_namespace"])).st_ino


def test_agent_view_equals_runtime_for_every_sandbox_and_container(
    agent: RunningAgent,
    runtime_driver: CriPodDriver,
    runtime_facts: RuntimeFacts,
    two_pods: list[PodHandle],
) -> None:
    for handle in two_pods:
        wait_running(agent, handle)
    sandboxes = {s["id"]: s for s in agent.get("/v1/sandboxes").json()["items"]}
    containers = {c["id"]: c for c in agent.get("/v1/containers").json()["items"]}

    for handle in two_pods:
        runtime_sb = runtime_driver.sandbox_status(handle.sandbox_id, verbose=True)
        sandbox_info = json.loads(runtime_sb.info["info"])
        mine = sandboxes[handle.sandbox_id]
        assert mine["pod"] == runtime_sb.status.metadata.name == handle.name
        assert mine["namespace"] == handle.namespace
        assert mine["pod_uid"] == handle.uid
        assert mine["attempt"] == runtime_sb.status.metadata.attempt
        assert mine["state"] == "ready"
        assert mine["network_mode"] == ("node" if handle.host_network else "pod")
        assert mine["container_count"] == len(handle.containers)
        pause_pid: int | None = None
        if runtime_facts.pause_always:
            pause_pid = sandbox_info["pid"]
            assert mine["pause_pid"] == pause_pid
            # The pause PID really is the pause process of this sandbox.
            cmdline = Path(f"/proc/{pause_pid}/cmdline").read_bytes()
            assert cmdline.split(b"\0")[0].endswith(b"pause")
            assert handle.sandbox_id in Path(f"/proc/{pause_pid}/cgroup").read_text()
        else:
            # CRI-O's drop_infra_ctr: no pause process, said so, not an error.
            assert "pid" not in sandbox_info
            assert mine["pause_pid"] is None
            assert mine["pause_pid_note"] == NO_INFRA_CONTAINER

        for name, container_id in handle.container_ids.items():
            runtime = runtime_driver.container_status(container_id, verbose=True)
            status = runtime.status
            verbose_pid = json.loads(runtime.info["info"])["pid"]
            seen = containers[container_id]
            assert seen["name"] == status.metadata.name == name
            assert seen["attempt"] == status.metadata.attempt == 0
            assert seen["state"] == STATE_NAMES[status.state] == "running"
            assert seen["sandbox_id"] == handle.sandbox_id
            assert seen["pod"] == handle.name
            assert seen["pod_uid"] == handle.uid
            assert seen["log_path"] == status.log_path
            assert seen["pid"] == verbose_pid
            # The PID checked against /proc: its cgroup names this container,
            # and it is in the pod's network namespace.
            assert container_id in Path(f"/proc/{verbose_pid}/cgroup").read_text()
            if handle.host_network:
                assert netns(verbose_pid) == netns(os.getpid())
            else:
                assert netns(verbose_pid) == pod_netns(mine, pause_pid)
        if handle.host_network:
            assert mine["network_namespace"] is None
            if pause_pid is not None:
                assert netns(pause_pid) == netns(os.getpid())
        else:
            assert mine["network_namespace"]
            assert pod_netns(mine, pause_pid) != netns(os.getpid())


def test_container_and_sandbox_detail_show_processes_and_namespaces(
    agent: RunningAgent, runtime_facts: RuntimeFacts, two_pods: list[PodHandle]
) -> None:
    web = two_pods[0]
    wait_running(agent, web)
    app_id = web.container_id("app")
    detail = agent.get(f"/v1/containers/{app_id[:12]}").json()
    assert detail["id"] == app_id
    assert detail["process"]["pid"] == detail["pid"]
    # sh -c '... sleep 3600 & wait': the shell has the sleep as a child.
    children = detail["process_tree"]["children"]
    assert any("sleep" in " ".join(c["cmdline"]) for c in children), detail["process_tree"]
    assert {n["type"] for n in detail["namespaces"]} >= {"network", "pid", "mount"}

    sandbox = agent.get(f"/v1/sandboxes/{web.sandbox_id[:10]}").json()
    assert sandbox["id"] == web.sandbox_id
    if runtime_facts.pause_always:
        assert sandbox["pause_process"]["pid"] == sandbox["pause_pid"]
    else:
        assert (sandbox["pause_pid"], sandbox["pause_process"]) == (None, None)
        assert sandbox["pause_pid_note"] == NO_INFRA_CONTAINER
    assert sorted(c["name"] for c in sandbox["containers"]) == ["app", "sidecar"]


def test_any_process_in_a_container_tree_maps_back_to_its_pod(
    agent: RunningAgent, runtime_facts: RuntimeFacts, two_pods: list[PodHandle]
) -> None:
    web = two_pods[0]
    items = wait_running(agent, web)
    app = next(c for c in items if c["name"] == "app")
    detail = agent.get(f"/v1/containers/{app['id']}").json()
    child_pid = detail["process_tree"]["children"][0]["pid"]

    main = agent.get(f"/v1/processes/{app['pid']}").json()
    assert main["container"]["id"] == app["id"]
    assert (main["pod"], main["namespace"]) == ("web", "shop")

    child = agent.get(f"/v1/processes/{child_pid}").json()
    assert child["container"]["id"] == app["id"]
    assert child["matched_by"] == "cgroup"

    sandbox = agent.get(f"/v1/sandboxes/{web.sandbox_id}").json()
    if runtime_facts.pause_always:
        pause = agent.get(f"/v1/processes/{sandbox['pause_pid']}").json()
        assert pause["matched_by"] == "pause"
        assert pause["container"] is None
        assert pause["sandbox"]["id"] == web.sandbox_id
    else:
        assert sandbox["pause_pid"] is None

    mine = agent.get(f"/v1/processes/{os.getpid()}")
    assert mine.status_code == 404
    # A process outside every container is named by its PID only: nothing of
    # a foreign process (its name, its cgroup) is told.
    assert mine.json()["message"] == f"PID {os.getpid()} is not in a container"


def test_kill_shows_exit_137_error_within_moments_and_restart_adds_attempt(
    agent: RunningAgent, runtime_driver: CriPodDriver, two_pods: list[PodHandle]
) -> None:
    web = two_pods[0]
    items = wait_running(agent, web)
    sidecar = next(c for c in items if c["name"] == "sidecar")

    os.kill(int(sidecar["pid"]), signal.SIGKILL)  # type: ignore[call-overload]
    killed_at = time.monotonic()

    def exited(a: RunningAgent) -> dict[str, object] | None:
        now = a.get(f"/v1/containers/{sidecar['id']}").json()
        return now if now["state"] == "exited" else None

    seen = agent.wait_for(exited, timeout=5, interval=0.005)
    latency = time.monotonic() - killed_at
    runtime = runtime_driver.container_status(str(sidecar["id"])).status
    assert (seen["exit_code"], seen["reason"]) == (runtime.exit_code, runtime.reason)
    assert (seen["exit_code"], seen["reason"]) == (137, "Error")
    assert seen["pid"] is None
    assert seen["finished_at"] is not None
    # pidfd exit notification: well under the 0.5 s relist interval.
    assert latency < 0.45, f"exit seen after {latency:.3f}s"

    new = runtime_driver.restart_container(web, "sidecar")
    assert new.attempt == 1

    def both_attempts(a: RunningAgent) -> list[dict[str, object]] | None:
        mine = [c for c in containers_of(a, "web") if c["name"] == "sidecar"]
        attempts = sorted((c["attempt"], c["state"]) for c in mine)
        return mine if attempts == [(0, "exited"), (1, "running")] else None

    agent.wait_for(both_attempts)
    current = agent.get(f"/v1/containers/{new.id}").json()
    assert current["pid"] == runtime_driver.container_pid(new.id)
    assert current["log_path"].endswith("sidecar/1.log")


def test_filters_and_text_output(
    agent: RunningAgent, runtime_facts: RuntimeFacts, two_pods: list[PodHandle]
) -> None:
    for handle in two_pods:
        wait_running(agent, handle)
    shop = agent.get("/v1/containers", params={"namespace": "shop"}).json()["items"]
    assert {c["pod"] for c in shop} == {"web"}
    named = agent.get("/v1/containers", params={"name": "main", "state": "running"}).json()
    assert [c["pod"] for c in named["items"]] == ["node-agent"]
    ready = agent.get("/v1/sandboxes", params={"state": "ready", "pod": "web"}).json()["items"]
    assert [s["id"] for s in ready] == [two_pods[0].sandbox_id]

    text = agent.get("/v1/containers", params={"output": "text"})
    assert text.headers["content-type"].startswith("text/plain")
    lines = text.text.splitlines()
    assert lines[0].split()[:3] == ["CONTAINER", "NAME", "STATE"]
    assert any(line.startswith(two_pods[0].container_id("app")[:13]) for line in lines)
    by_accept = agent.get("/v1/sandboxes", headers={"Accept": "text/plain"})
    assert by_accept.text.startswith("POD ID")
    node = agent.get("/v1/node").json()
    assert node["runtime"]["name"] == runtime_facts.runtime_name
    assert node["runtime"]["cri_api_version"] == "v1"
    capabilities = node["capabilities"]
    assert capabilities["pause_processes"] == (
        "always" if runtime_facts.pause_always else "per-pod"
    )
    if runtime_facts.streams_events:
        assert capabilities["change_source"] == "events"
        assert capabilities["change_source_reason"] is None
        assert (
            capabilities["relist_interval_seconds"]
            == agent.node.settings.events_relist_interval_seconds
        )
    else:
        # containerd 1.6 has no container event stream; the agent says it relists, and why.
        assert capabilities["change_source"] == "relist"
        assert "does not implement GetContainerEvents" in capabilities["change_source_reason"]
    assert node["counts"]["sandboxes"] >= 2


def test_runtime_down_gives_503_and_the_agent_recovers_by_itself(
    agent: RunningAgent, cri_runtime: PrivateRuntime, two_pods: list[PodHandle]
) -> None:
    web = two_pods[0]
    wait_running(agent, web)
    cri_runtime.kill()
    try:
        agent.wait_for(lambda a: a.get("/readyz").status_code == 503, timeout=10)
        ready = agent.get("/readyz").json()
        assert ready["status"] == "unavailable"
        assert "unavailable since" in ready["checks"]["runtime"]
        down = agent.get("/v1/containers")
        assert down.status_code == 503
        assert down.json()["error"] == "runtime_unavailable"
        assert agent.get("/healthz").status_code == 200
        node = agent.get("/v1/node").json()
        assert node["runtime"]["connected"] is False
        assert node["runtime"]["reason"]
    finally:
        cri_runtime.start()
    agent.wait_for(lambda a: a.get("/readyz").status_code == 200, timeout=20)
    # Same pods, same PIDs: the containers kept running while containerd was down.
    after = wait_running(agent, web)
    assert {c["id"] for c in after} == set(web.container_ids.values())


def test_stale_state_is_dropped_when_a_pod_is_removed(
    agent: RunningAgent, runtime_driver: CriPodDriver, runtime_pod: Callable[..., PodHandle]
) -> None:
    gone = runtime_pod(
        "short-lived", containers=[ContainerDef("c", BUSYBOX, command=["sleep", "60"])]
    )
    wait_running(agent, gone)
    runtime_driver.remove_pod(gone)
    agent.wait_for(lambda a: not containers_of(a, "short-lived"))
    # With runtime events the containers' and the sandbox's removals arrive
    # one by one; both go, each by its own event or the next relist.
    agent.wait_for(lambda a: a.get(f"/v1/sandboxes/{gone.sandbox_id}").status_code == 404)
    missing = agent.get(f"/v1/sandboxes/{gone.sandbox_id}")
    assert missing.status_code == 404
    assert gone.sandbox_id in missing.json()["message"]
    assert api_pb2.SANDBOX_READY == 0  # the enum the agent maps "ready" from


def test_bulk_start_takes_pids_from_proc_then_fills_in_verbose_details(
    cri_runtime: PrivateRuntime, runtime_driver: CriPodDriver, two_pods: list[PodHandle]
) -> None:
    # Every object counts as "many at once": plain status calls plus one /proc scan.
    settings = Settings(
        cri_endpoint=cri_runtime.endpoint,
        node_name="lab-node",
        relist_interval_seconds=0.5,
        verbose_batch_limit=0,
    )
    with running_agent(settings) as bulk:
        bulk.wait_for(lambda a: a.get("/readyz").status_code == 200)
        for handle in two_pods:
            sandbox = bulk.get(f"/v1/sandboxes/{handle.sandbox_id}").json()
            assert sandbox["pause_pid"] == runtime_driver.sandbox_pid(handle.sandbox_id)
            for container_id in handle.container_ids.values():
                seen = bulk.get(f"/v1/containers/{container_id}").json()
                assert seen["pid"] == runtime_driver.container_pid(container_id)

        # The verbose details (namespaces, mounts) follow in the background.
        app_id = two_pods[0].container_id("app")

        def enriched(a: RunningAgent) -> bool:
            detail = a.get(f"/v1/containers/{app_id}").json()
            return bool(detail["namespaces"]) and bool(detail["mounts"])

        bulk.wait_for(enriched)
        web = bulk.get(f"/v1/sandboxes/{two_pods[0].sandbox_id}").json()
        assert web["network_namespace"]
        assert bulk.node.status_calls >= 2 * (len(two_pods) + 3)
