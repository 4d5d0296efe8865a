"""The pod join against each real runtime, with the pods' API objects in the fake API server.

Runs against containerd 1.6, containerd 2.x and CRI-O (the ``cri_runtime``
matrix). Runtime pods are created through CRI as kubelet would; their API
objects, with the container statuses kubelet would write, live in the fake
server. Orphans and mismatches are created on purpose.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agent.settings import Settings
from lab.apiserver import FakeApiServer
from lab.cri_pods import ContainerDef, CriPodDriver, PodHandle
from lab.runtimes import PrivateRuntime, RuntimeFacts
from tests.agent_server import RunningAgent, running_agent

pytestmark = pytest.mark.containerd

NODE = "lab-node"
BUSYBOX = "docker.io/library/busybox:latest"


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def api(cri_runtime: PrivateRuntime) -> Iterator[FakeApiServer]:
    # One per runtime: each starts from an empty cluster.
    with FakeApiServer(bookmark_interval=1.0) as fake:
        yield fake


@pytest.fixture(scope="module")
def agent(cri_runtime: PrivateRuntime, api: FakeApiServer) -> Iterator[RunningAgent]:
    settings = Settings(
        cri_endpoint=cri_runtime.endpoint,
        api_server=api.url,
        node_name=NODE,
        relist_interval_seconds=0.5,
        mismatch_grace_seconds=0.5,
        api_timeout_seconds=2,
    )
    with running_agent(settings) as running:
        running.wait_for(lambda a: a.get("/readyz").json().get("status") == "ok")
        yield running


def api_pod(name: str, ns: str, containers: list[str], **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": {
            "nodeName": NODE,
            "restartPolicy": "Always",
            "containers": [{"name": c, "image": "busybox"} for c in containers],
            **spec,
        },
    }


def running_status(handle: PodHandle, started: datetime, scheme: str) -> dict[str, Any]:
    """The status kubelet writes for a pod whose containers all run and are ready."""
    return {
        "phase": "Running",
        "startTime": iso(started),
        "conditions": [
            {"type": t, "status": "True", "lastTransitionTime": iso(started)}
            for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
        ],
        "containerStatuses": [
            {
                "name": name,
                "image": "docker.io/library/busybox:latest",
                "imageID": "",
                "containerID": f"{scheme}{inst.id}",
                "ready": True,
                "started": True,
                "restartCount": inst.attempt,
                "state": {"running": {"startedAt": iso(started)}},
            }
            for name, inst in handle.containers.items()
        ],
    }


@pytest.fixture
def web(
    api: FakeApiServer, runtime_pod: Callable[..., PodHandle], runtime_facts: RuntimeFacts
) -> Iterator[tuple[dict[str, Any], PodHandle]]:
    created = api.add("pods", api_pod("web", "shop", ["app", "sidecar"]))
    uid = created["metadata"]["uid"]
    handle = runtime_pod(
        "web",
        "shop",
        uid=uid,
        containers=[
            ContainerDef("app", BUSYBOX, command=["sleep", "3600"]),
            ContainerDef("sidecar", BUSYBOX, command=["sleep", "3600"]),
        ],
    )
    api.patch_status(
        "shop", "web", running_status(handle, datetime.now(UTC), runtime_facts.api_id_prefix)
    )
    yield created, handle
    api.delete("pods", "shop", "web")


def view(agent: RunningAgent, ns: str, name: str) -> dict[str, Any]:
    response = agent.get(f"/v1/pods/{ns}/{name}")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def wait_view(
    agent: RunningAgent, ns: str, name: str, check: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    def probe(a: RunningAgent) -> dict[str, Any] | None:
        response = a.get(f"/v1/pods/{ns}/{name}")
        if response.status_code != 200:
            return None
        body = response.json()
        return body if check(body) else None

    return agent.wait_for(probe)  # type: ignore[no-any-return]


def ns_link(pid: int, kind: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except PermissionError:
        return None


def test_joined_view_matches_kubectl_and_the_runtime(
    agent: RunningAgent,
    runtime_driver: CriPodDriver,
    runtime_facts: RuntimeFacts,
    web: tuple[dict[str, Any], PodHandle],
) -> None:
    _, handle = web
    pod = wait_view(
        agent,
        "shop",
        "web",
        lambda p: p["status"] == "Running" and all(c["pid"] for c in p["containers"]),
    )
    assert (pod["status"], pod["ready"], pod["restarts"]) == ("Running", "2/2", "0")
    assert pod["api"] == "ok"
    assert pod["api_known"] is True
    assert pod["mismatches"] == []
    assert [s["id"] for s in pod["sandboxes"]] == [handle.sandbox_id]
    assert pod["sandboxes"][0]["pause_pid"] == runtime_driver.sandbox_pid(handle.sandbox_id)
    by_name = {c["name"]: c for c in pod["containers"]}
    assert sorted(by_name) == ["app", "sidecar"]
    for name, inst in handle.containers.items():
        mine = by_name[name]
        assert mine["role"] == "app"
        assert mine["id"] == inst.id
        assert mine["pid"] == runtime_driver.container_pid(inst.id)
        assert mine["ready"] is True
        assert mine["state"] == "running"
        assert mine["process_tree"]["pid"] == mine["pid"]
        if not runtime_facts.pause_always:
            continue  # no pause process to compare with (test_runtime_crio.py)
        # Pod network: net, ipc and uts are the pause process's; pid is the container's own.
        assert mine["shares_with_pause"]["net"] is True
        assert mine["shares_with_pause"]["ipc"] is True
        assert mine["shares_with_pause"]["pid"] is False

    text = agent.get("/v1/pods", params={"namespace": "shop", "output": "text"}).text
    header, row = text.splitlines()[:2]
    assert header.split()[:5] == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS"]
    assert row.split()[:5] == ["shop", "web", "2/2", "Running", "0"]
    if not runtime_facts.pause_always:
        return

    # Namespaces the pause shares with the node's initial ones (kthreadd's) say
    # nothing about the pod.
    pause = pod["sandboxes"][0]["pause_pid"]
    kinds = set(by_name["app"]["shares_with_pause"])
    host_wide = sorted(k for k in kinds if ns_link(pause, k) == ns_link(2, k) is not None)
    assert pod["pause_shares_with_host"] == host_wide
    assert {"net", "ipc", "uts", "pid", "mnt"}.isdisjoint(host_wide)
    assert "user" in host_wide  # the lab runs no user namespaces
    detail = agent.get("/v1/pods/shop/web", params={"output": "text"}).text
    rows = {line.split()[0]: line.split() for line in detail.splitlines() if line.strip()}
    pod_level = sorted(k for k, v in by_name["app"]["shares_with_pause"].items() if v)
    pod_level = [k for k in pod_level if k not in host_wide]
    assert rows["app"][-1] == ",".join(pod_level)
    assert "net" in pod_level


def test_orphan_runtime_pod_is_reported_with_age_and_pids(
    agent: RunningAgent, runtime_pod: Callable[..., PodHandle]
) -> None:
    orphan = runtime_pod(
        "leftover", "old", containers=[ContainerDef("c", BUSYBOX, command=["sleep", "3600"])]
    )
    pod = wait_view(agent, "old", "leftover", lambda p: bool(p["mismatches"]))
    assert pod["api_known"] is False
    kinds = {m["kind"] for m in pod["mismatches"]}
    assert "orphan-sandbox" in kinds
    sandbox_finding = next(m for m in pod["mismatches"] if m["kind"] == "orphan-sandbox")
    assert orphan.sandbox_id[:13] in sandbox_finding["message"]
    problems = agent.get("/v1/pods", params={"problems": "true"}).json()["items"]
    assert ("old", "leftover") in {(p["namespace"], p["name"]) for p in problems}


def test_api_pod_without_sandbox_is_reported_since_scheduling(
    agent: RunningAgent, api: FakeApiServer
) -> None:
    api.add("pods", api_pod("ghost", "shop", ["app"]))
    scheduled = datetime.now(UTC) - timedelta(minutes=5)
    api.patch_status(
        "shop",
        "ghost",
        {
            "phase": "Pending",
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": iso(scheduled)}
            ],
        },
    )
    try:
        # The pod is added, then its status patched: on a busy machine the
        # agent may judge the first version (no PodScheduled yet, so "since
        # its creation") before the patch reaches it. The answer that counts
        # is the one once the agent holds the patched status.
        pod = wait_view(
            agent,
            "shop",
            "ghost",
            lambda p: any(
                m["kind"] == "no-sandbox" and m["since"].startswith(iso(scheduled)[:16])
                for m in p["mismatches"]
            ),
        )
        finding = next(m for m in pod["mismatches"] if m["kind"] == "no-sandbox")
        assert finding["evidence"]["scheduled_at"].startswith(iso(scheduled)[:16])
        assert pod["sandboxes"] == []
        assert pod["containers"][0]["state"] == "not-created"
    finally:
        api.delete("pods", "shop", "ghost")


def test_running_in_api_but_exited_in_runtime_and_unknown_ids(
    agent: RunningAgent,
    api: FakeApiServer,
    runtime_facts: RuntimeFacts,
    web: tuple[dict[str, Any], PodHandle],
) -> None:
    _, handle = web
    pod = wait_view(agent, "shop", "web", lambda p: all(c["pid"] for c in p["containers"]))
    app = next(c for c in pod["containers"] if c["name"] == "app")
    os.kill(app["pid"], signal.SIGKILL)
    # The API still says running (no kubelet here to update it): a mismatch,
    # once the grace period has passed.
    pod = wait_view(
        agent,
        "shop",
        "web",
        lambda p: any(m["kind"] == "api-running-runtime-exited" for m in p["mismatches"]),
    )
    finding = next(m for m in pod["mismatches"] if m["kind"] == "api-running-runtime-exited")
    assert finding["container"] == "app"
    assert 137 in finding["evidence"].values() or "137" in finding["message"]

    status = running_status(handle, datetime.now(UTC), runtime_facts.api_id_prefix)
    status["containerStatuses"][1]["containerID"] = runtime_facts.api_id_prefix + "f" * 64
    api.patch_status("shop", "web", status)
    pod = wait_view(
        agent,
        "shop",
        "web",
        lambda p: any(m["kind"] == "unknown-container-id" for m in p["mismatches"]),
    )
    unknown = next(m for m in pod["mismatches"] if m["kind"] == "unknown-container-id")
    assert unknown["container"] == "sidecar"


def test_bad_names_and_unknown_pods(agent: RunningAgent) -> None:
    missing = agent.get("/v1/pods/shop/nope")
    assert missing.status_code == 404
    assert "shop/nope" in missing.json()["message"]
    for path in ("/v1/pods/Shop/web", "/v1/pods/shop/web_1", "/v1/pods/shop/" + "a" * 254):
        response = agent.get(path)
        assert response.status_code == 422, path
        assert response.json()["error"] == "invalid_input"


def test_api_server_away_keeps_runtime_view_and_says_so(
    cri_runtime: PrivateRuntime,
    runtime_pod: Callable[..., PodHandle],
    runtime_facts: RuntimeFacts,
) -> None:
    fake = FakeApiServer(bookmark_interval=1.0).start()
    created = fake.add("pods", api_pod("solo", "team", ["main"]))
    handle = runtime_pod(
        "solo",
        "team",
        uid=created["metadata"]["uid"],
        containers=[ContainerDef("main", BUSYBOX, command=["sleep", "3600"])],
    )
    fake.patch_status(
        "team", "solo", running_status(handle, datetime.now(UTC), runtime_facts.api_id_prefix)
    )
    settings = Settings(
        cri_endpoint=cri_runtime.endpoint,
        api_server=fake.url,
        node_name=NODE,
        relist_interval_seconds=0.5,
        api_timeout_seconds=1,
    )
    with running_agent(settings) as agent:
        wait_view(agent, "team", "solo", lambda p: p["api"] == "ok" and p["status"] == "Running")
        fake.stop()
        pod = wait_view(agent, "team", "solo", lambda p: p["api"].startswith("unavailable since"))
        # The runtime side is still served and current.
        assert pod["containers"][0]["pid"] is not None
        assert agent.get("/readyz").json()["status"] == "degraded"
        assert agent.get("/v1/node").json()["api"]["state"] == "unavailable"


def test_pod_detail_carries_its_events(
    agent: RunningAgent, api: FakeApiServer, web: tuple[dict[str, Any], PodHandle]
) -> None:
    created, _ = web
    uid = created["metadata"]["uid"]
    for reason, message in (("Pulled", "Container image already present"), ("Started", "ok")):
        api.add(
            "events",
            {
                "metadata": {"generateName": "web.", "namespace": "shop"},
                "involvedObject": {"kind": "Pod", "name": "web", "namespace": "shop", "uid": uid},
                "reason": reason,
                "message": message,
                "type": "Normal",
                "count": 1,
                "lastTimestamp": iso(datetime.now(UTC)),
                "source": {"component": "kubelet", "host": NODE},
            },
        )
    api.add(
        "events",
        {
            "metadata": {"generateName": "other.", "namespace": "shop"},
            "involvedObject": {"kind": "Pod", "name": "other", "namespace": "shop", "uid": "x"},
            "reason": "BackOff",
            "message": "not this pod's",
        },
    )
    pod = wait_view(agent, "shop", "web", lambda p: bool(p["events"]))
    assert {e["reason"] for e in pod["events"]} == {"Pulled", "Started"}
    assert pod["events"][0]["source"] == "kubelet"
    listed = agent.get("/v1/pods", params={"namespace": "shop"}).json()["items"]
    assert all(p["events"] is None for p in listed)
