"""The real node on containerd 2.x and on CRI-O: ``lab up --real --runtime containerd2|crio``.

The other real-cluster modules share one node on containerd 1.6 (the
session's ``real_cluster``); this one brings the real node up once per
other runtime, as a person does (``python -m lab up --real --runtime X``),
and checks what differs by runtime end to end: the kubelet pulls through
the runtime's own mirror configuration (containerd 2.x's ``hosts.toml``,
CRI-O's ``registries.conf``), the agent's image was put into that runtime's
storage and its DaemonSet finds that runtime's socket, CRI-O's containers
start under the real kubelet on this cgroup v1 machine, and the agent's
inventory and pod join agree with kubectl. Then the kubelet and the runtime
are restarted under a running pod (``LabNode.restart``): the pod keeps its
container and the agent follows. ``lab down`` must leave nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.node import daemon_component
from lab.runtimes import FACTS, runtime_problem
from tests.conftest import lab_unavailable
from tests.real_cluster import (
    Reading,
    RealCluster,
    Row,
    disagreeing,
    note,
    real_node_up,
    real_problem,
    wait_for,
)

pytestmark = [pytest.mark.containerd, pytest.mark.real]

# The version each runtime reports of itself, and where the agent's pod reaches it.
EXPECTED = {
    "containerd2": ("v2.", "unix:///run/containerd/containerd.sock"),
    "crio": ("1.", "unix:///run/crio/crio.sock"),
}

TWO_CONTAINERS = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "web"},
    "spec": {
        "terminationGracePeriodSeconds": 1,
        "containers": [
            {"name": "nginx", "image": "nginx"},
            {
                "name": "sidecar",
                "image": "busybox",
                "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"],
            },
        ],
    },
}


SLEEPER = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "sleeper"},
    "spec": {
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "app", "image": "busybox", "command": ["sleep", "3600"]}],
    },
}


@pytest.fixture(scope="module", params=sorted(EXPECTED))
def node_on(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, RealCluster]]:
    """The real node on one runtime: up, until pods can be made; down, leaving nothing."""
    runtime: str = request.param
    problem = real_problem() or runtime_problem(runtime)
    if problem:
        lab_unavailable(problem)
    lab_dir = tmp_path_factory.mktemp(f"real-{runtime}")
    with real_node_up(lab_dir, "--runtime", runtime) as cluster:
        note(f"real node on {runtime} up in {cluster.started_in:.1f}s")
        yield runtime, cluster


def test_status_and_the_agent_name_the_runtime(node_on: tuple[str, RealCluster]) -> None:
    runtime, cluster = node_on
    status = cluster.node.status()
    assert status["mode"] == "real"
    assert status["runtime"] == runtime
    assert status["healthy"], status["components"]
    # The runtime's daemon runs under its own name beside the upstream components.
    assert ("crio" in status["components"]) == (runtime == "crio")
    version, endpoint = EXPECTED[runtime]
    seen = cluster.agent_json("/v1/node")
    assert seen["runtime"]["connected"], seen["runtime"]
    assert seen["runtime"]["name"] == FACTS[runtime].runtime_name
    assert seen["runtime"]["version"].startswith(version), seen["runtime"]
    assert seen["runtime"]["endpoint"] == endpoint
    assert seen["api"]["state"] == "ok", seen["api"]
    # Both runtimes broadcast container events; the agent follows them.
    assert FACTS[runtime].streams_events
    assert seen["capabilities"]["change_source"] == "events", seen["capabilities"]


def test_pods_pulled_through_the_mirror_join_as_kubectl_shows_them(
    node_on: tuple[str, RealCluster],
) -> None:
    runtime, cluster = node_on
    cluster.apply(TWO_CONTAINERS)
    try:
        wait_for(
            "web Running 2/2 for kubectl",
            lambda: (
                (r := cluster.kubectl_rows().get("web"))
                and (r.status, r.ready) == ("Running", "2/2")
            ),
            120,
            describe=lambda: cluster.kubectl("describe", "pod", "web").stdout[-1500:],
        )
        pod: dict[str, Any] = wait_for(
            "the agent's view of web with both PIDs",
            lambda: _joined(cluster, "web"),
            30,
            interval=0.25,
        )
        api = cluster.pod("web") or {}
        assert pod["uid"] == api["metadata"]["uid"]
        runtime_ids = {
            s["name"]: s["containerID"].split("://", 1)[1]
            for s in api["status"]["containerStatuses"]
        }
        prefix = api["status"]["containerStatuses"][0]["containerID"].split("://", 1)[0]
        assert prefix + "://" == FACTS[runtime].api_id_prefix
        for container in pod["containers"]:
            assert container["id"] == runtime_ids[container["name"]]
            assert Path(f"/proc/{container['pid']}").is_dir(), container
        assert not pod.get("mismatches"), pod.get("mismatches")

        # Every pod on the node (the agent's own DaemonSet pod too) as kubectl
        # prints it; read again only if a reading straddled a change.
        for _ in range(5):
            reading = Reading(
                0.0, cluster.agent_node_rows(), cluster.node_rows(), cluster.agent_node_rows()
            )
            differ = disagreeing(reading)
            if not differ:
                break
            time.sleep(0.5)
        assert not differ, reading
        assert any(key.startswith("podlens-system/podlens-agent-") for key in reading.kubectl)
    finally:
        cluster.delete_pods(["web"])


def _joined(cluster: RealCluster, name: str) -> dict[str, Any] | None:
    response = cluster.agent("GET", f"/v1/pods/default/{name}")
    if response.status_code != 200:
        return None
    pod: dict[str, Any] = response.json()
    running = [c for c in pod["containers"] if c["state"] == "running" and c["pid"]]
    return pod if pod["status"] == "Running" and len(running) == 2 else None


def test_the_kubelet_and_the_runtime_restart_under_a_running_pod(
    node_on: tuple[str, RealCluster],
) -> None:
    runtime, cluster = node_on
    cluster.apply(SLEEPER)
    try:
        wait_for(
            "sleeper Running 1/1 for kubectl and the agent",
            lambda: (
                cluster.kubectl_rows().get("sleeper")
                == Row("Running", "1/1", "0")
                == cluster.agent_rows().get("sleeper")
            ),
            120,
        )
        before = cluster.pod("sleeper") or {}
        took = {}
        # The lab's own restart: same command line, the port-forward opened again.
        for component in ("kubelet", daemon_component(runtime)):
            forward = cluster.state().components["agent"].pid
            took[component] = cluster.node.restart(component)
            assert cluster.state().components["agent"].pid != forward, component
            wait_for(
                f"the agent connected to {runtime} again after the {component} restart",
                lambda: cluster.agent_json("/v1/node")["runtime"]["connected"],
                60,
                interval=0.5,
            )
        note(
            f"restarts on {runtime}: "
            + ", ".join(f"{name} ready again in {s:.1f}s" for name, s in took.items())
        )
        # Neither restart touched the pod: the same container, never restarted.
        after = cluster.pod("sleeper") or {}
        ids = [p["status"]["containerStatuses"][0]["containerID"] for p in (before, after)]
        assert ids[0] == ids[1], ids
        wait_for(
            "sleeper the same for kubectl and the agent after the restarts",
            lambda: (
                cluster.kubectl_rows().get("sleeper")
                == Row("Running", "1/1", "0")
                == cluster.agent_rows().get("sleeper")
            ),
            60,
            interval=0.5,
        )
    finally:
        cluster.delete_pods(["sleeper"])
