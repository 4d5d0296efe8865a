"""What containerd 2.x's sandboxed CRI does differently, live, and what the agent shows of it.

containerd 2.x moved the pod sandbox behind a sandbox controller: the
verbose sandbox info carries ``sandboxMetadata`` (with the netns path),
``processStatus`` says ``deleted`` once the pause task is gone, and when the
sandbox's container is gone too the info is the reduced one the CRI service
builds from its own store (``runtimeSpec`` null, no image). Each case is made
on a private containerd 2.x of this module's own (the cases break sandboxes).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.settings import Settings
from lab.cri_pods import ContainerDef, CriPodDriver, PodHandle
from lab.images import ImageTar
from lab.runtimes import PrivateContainerd2, runtime_problem
from tests.agent_server import RunningAgent, running_agent
from tests.conftest import lab_unavailable

pytestmark = pytest.mark.containerd

BUSYBOX = "docker.io/library/busybox:latest"
SLEEP = ["sleep", "3600"]
SANDBOX_KEYS = {
    "pid",
    "processStatus",
    "netNamespaceClosed",
    "image",
    "snapshotKey",
    "snapshotter",
    "runtimeType",
    "runtimeOptions",
    "config",
    "runtimeSpec",
    "cniResult",
    "sandboxMetadata",
}
CONTAINER_KEYS = {
    "sandboxID",
    "pid",
    "removing",
    "snapshotKey",
    "snapshotter",
    "runtimeType",
    "runtimeOptions",
    "config",
    "runtimeSpec",
}


@pytest.fixture(scope="module")
def containerd2(lab_dir: Path, lab_images: list[ImageTar]) -> Iterator[PrivateContainerd2]:
    problem = runtime_problem("containerd2")
    if problem:
        lab_unavailable(f"containerd2: {problem}")
    instance = PrivateContainerd2(lab_dir / "c2-shapes", lab_images)
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()


@pytest.fixture(scope="module")
def driver(containerd2: PrivateContainerd2, lab_dir: Path) -> Iterator[CriPodDriver]:
    with CriPodDriver(containerd2.endpoint, lab_dir / "pods-c2-shapes") as made:
        yield made
        made.remove_all()


@pytest.fixture(scope="module")
def agent(containerd2: PrivateContainerd2) -> Iterator[RunningAgent]:
    settings = Settings(
        cri_endpoint=containerd2.endpoint, node_name="lab-node", events_relist_interval_seconds=1
    )
    with running_agent(settings) as running:
        running.wait_for(lambda a: a.get("/readyz").status_code == 200)
        yield running


def sandbox_info(driver: CriPodDriver, sandbox_id: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(driver.sandbox_status(sandbox_id, verbose=True).info["info"])
    return found


def sandbox(agent: RunningAgent, sandbox_id: str) -> dict[str, Any]:
    found: dict[str, Any] = agent.get(f"/v1/sandboxes/{sandbox_id}").json()
    return found


def run(driver: CriPodDriver, name: str) -> PodHandle:
    return driver.run_pod(name, "c2", containers=[ContainerDef("app", BUSYBOX, command=SLEEP)])


def test_verbose_info_of_2x_and_what_the_agent_reads_from_it(
    agent: RunningAgent, driver: CriPodDriver
) -> None:
    pod = run(driver, "shapes")
    info = sandbox_info(driver, pod.sandbox_id)
    assert set(info) >= SANDBOX_KEYS
    assert info["processStatus"] == "running"
    netns_path = info["sandboxMetadata"]["Metadata"]["NetNSPath"]
    container = json.loads(
        driver.container_status(pod.container_id("app"), verbose=True).info["info"]
    )
    assert set(container) >= CONTAINER_KEYS
    assert container["sandboxID"] == pod.sandbox_id

    seen = agent.wait_for(lambda a: (s := sandbox(a, pod.sandbox_id)).get("pause_pid") and s)
    assert seen["pause_pid"] == info["pid"]
    assert seen["network_namespace"] == netns_path
    app = agent.get(f"/v1/containers/{pod.container_id('app')}").json()
    assert app["pid"] == container["pid"]
    # The container joins the pause process's network namespace.
    assert os.stat(f"/proc/{app['pid']}/ns/net").st_ino == os.stat(netns_path).st_ino


def test_a_stopped_sandbox_says_deleted_and_has_no_pause_pid(
    agent: RunningAgent, driver: CriPodDriver
) -> None:
    pod = run(driver, "stopped")
    agent.wait_for(lambda a: sandbox(a, pod.sandbox_id).get("pause_pid"))
    driver.stop_sandbox(pod.sandbox_id)
    info = sandbox_info(driver, pod.sandbox_id)
    assert (info["processStatus"], info["pid"], info["netNamespaceClosed"]) == ("deleted", 0, True)
    seen = agent.wait_for(
        lambda a: (s := sandbox(a, pod.sandbox_id)).get("state") == "notready" and s
    )
    assert seen["pause_pid"] is None
    assert seen["pause_pid_note"]


def test_the_reduced_info_without_a_sandbox_container_is_read_without_a_spec(
    agent: RunningAgent, containerd2: PrivateContainerd2, driver: CriPodDriver
) -> None:
    pod = run(driver, "reduced")
    agent.wait_for(lambda a: sandbox(a, pod.sandbox_id).get("pause_pid"))
    netns_path = sandbox_info(driver, pod.sandbox_id)["sandboxMetadata"]["Metadata"]["NetNSPath"]
    driver.stop_sandbox(pod.sandbox_id)
    # The sandbox's container goes (as when its shim and task are lost): the
    # CRI service answers from its own store.
    ctr = containerd2.bin_dir / "ctr"
    subprocess.run(
        [str(ctr), "-a", containerd2.address, "-n", "k8s.io", "containers", "rm", pod.sandbox_id],
        check=True,
        capture_output=True,
        timeout=30,
    )
    info = sandbox_info(driver, pod.sandbox_id)
    assert info["runtimeSpec"] is None
    assert info["image"] == ""
    assert info["processStatus"] == "deleted"
    seen = agent.wait_for(
        lambda a: (s := sandbox(a, pod.sandbox_id)).get("state") == "notready" and s
    )
    assert seen["pause_pid"] is None
    # Without a spec, the pod's network namespace still comes from the sandbox metadata.
    assert seen["network_namespace"] == netns_path
    assert agent.get("/readyz").status_code == 200


def test_a_killed_shim_leaves_a_notready_sandbox_the_agent_shows(
    agent: RunningAgent, containerd2: PrivateContainerd2, driver: CriPodDriver
) -> None:
    pod = run(driver, "shimless")
    agent.wait_for(lambda a: sandbox(a, pod.sandbox_id).get("pause_pid"))
    shims = [
        pid
        for pid in containerd2._monitor_pids()
        if pod.sandbox_id in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
    ]
    assert len(shims) == 1, shims
    os.kill(shims[0], signal.SIGKILL)
    info = sandbox_info(driver, pod.sandbox_id)
    assert info["processStatus"] == "deleted"
    seen = agent.wait_for(
        lambda a: (s := sandbox(a, pod.sandbox_id)).get("state") == "notready" and s, timeout=15
    )
    assert seen["pause_pid"] is None
    assert agent.get("/readyz").status_code == 200
    # Without its shim the pod cannot be stopped; a restarted containerd cleans
    # the dead shim up (as on a node), and then it can.
    containerd2.restart()
    driver.remove_pod(pod)
