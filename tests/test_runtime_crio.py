"""What CRI-O does differently, live, and what the agent shows of it.

CRI-O runs ordinary pods without a pause process (``drop_infra_ctr``, on by
default): the pod's namespaces are pinned files, the sandbox's verbose info
has no ``pid``, and the agent says why there is no pause PID. It keeps
reporting a container's PID after the process ended. It streams container
events only with ``enable_pod_events``; without it the stream ends at once.
Each case runs on a private CRI-O of this module's own.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.cri.verbose import NO_INFRA_CONTAINER
from agent.settings import Settings
from cri_proto import api_pb2
from lab.cri_pods import ContainerDef, CriPodDriver, PodHandle
from lab.images import ImageTar
from lab.runtimes import PrivateCrio, runtime_problem
from tests.agent_server import RunningAgent, running_agent
from tests.conftest import CRIO_TEST_TZ, lab_unavailable

pytestmark = pytest.mark.containerd

BUSYBOX = "docker.io/library/busybox:latest"
SLEEP = ["sleep", "3600"]


def _crio(base: Path, images: list[ImageTar], **options: Any) -> Iterator[PrivateCrio]:
    problem = runtime_problem("crio")
    if problem:
        lab_unavailable(f"crio: {problem}")
    instance = PrivateCrio(base, images, tz=CRIO_TEST_TZ, **options)
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()


@pytest.fixture(scope="module")
def crio(lab_dir: Path, lab_images: list[ImageTar]) -> Iterator[PrivateCrio]:
    yield from _crio(lab_dir / "crio-shapes", lab_images)


@pytest.fixture(scope="module")
def driver(crio: PrivateCrio, lab_dir: Path) -> Iterator[CriPodDriver]:
    with CriPodDriver(crio.endpoint, lab_dir / "pods-crio-shapes") as made:
        yield made
        made.remove_all()


@pytest.fixture(scope="module")
def agent(crio: PrivateCrio) -> Iterator[RunningAgent]:
    with running_agent(Settings(cri_endpoint=crio.endpoint, node_name="lab-node")) as running:
        running.wait_for(lambda a: a.get("/readyz").status_code == 200)
        yield running


def verbose(driver: CriPodDriver, container_id: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(
        driver.container_status(container_id, verbose=True).info["info"]
    )
    return found


def get(agent: RunningAgent, path: str) -> dict[str, Any]:
    response = agent.get(path)
    found: dict[str, Any] = response.json() if response.status_code == 200 else {}
    return found


def run(driver: CriPodDriver, name: str, **options: Any) -> PodHandle:
    return driver.run_pod(
        name, "crio", containers=[ContainerDef("app", BUSYBOX, command=SLEEP)], **options
    )


def test_a_pod_without_infra_container_has_its_namespaces_pinned_and_no_pause_pid(
    agent: RunningAgent, driver: CriPodDriver
) -> None:
    pod = run(driver, "no-infra")
    info = json.loads(driver.sandbox_status(pod.sandbox_id, verbose=True).info["info"])
    assert set(info) == {"runtimeSpec"}  # no pid, no image: no infra process
    pinned = {
        n["type"]: n["path"] for n in info["runtimeSpec"]["linux"]["namespaces"] if "path" in n
    }
    assert set(pinned) >= {"network", "ipc", "uts"}

    sandbox = agent.wait_for(lambda a: get(a, f"/v1/sandboxes/{pod.sandbox_id}") or None)
    assert sandbox["pause_pid"] is None
    assert sandbox["pause_pid_note"] == NO_INFRA_CONTAINER
    assert sandbox["pause_process"] is None
    assert sandbox["network_namespace"] == pinned["network"]
    # The pod's namespaces, read from its container's PID, are the pinned ones.
    app = agent.wait_for(
        lambda a: (c := get(a, f"/v1/containers/{pod.container_id('app')}")).get("pid") and c
    )
    for kind, proc_name in (("network", "net"), ("ipc", "ipc"), ("uts", "uts")):
        assert os.stat(f"/proc/{app['pid']}/ns/{proc_name}").st_ino == os.stat(pinned[kind]).st_ino
    listed = {n["type"]: n["path"] for n in app["namespaces"]}
    assert listed["network"] == pinned["network"]


def test_a_pod_sharing_its_pid_namespace_gets_an_infra_process(
    agent: RunningAgent, driver: CriPodDriver
) -> None:
    pod = run(driver, "shared-pid", share_process_namespace=True)
    info = json.loads(driver.sandbox_status(pod.sandbox_id, verbose=True).info["info"])
    assert info["pid"] > 0
    sandbox = agent.wait_for(
        lambda a: (s := get(a, f"/v1/sandboxes/{pod.sandbox_id}")).get("pause_pid") and s
    )
    assert sandbox["pause_pid"] == info["pid"]
    assert sandbox["pause_process"]["pid"] == info["pid"]


def test_the_pod_detail_reads_shared_namespaces_from_a_container_without_pause(
    agent: RunningAgent, driver: CriPodDriver
) -> None:
    pod = driver.run_pod(
        "two",
        "crio",
        containers=[
            ContainerDef("a", BUSYBOX, command=SLEEP),
            ContainerDef("b", BUSYBOX, command=SLEEP),
        ],
    )
    detail = agent.wait_for(
        lambda a: (
            (p := get(a, f"/v1/pods/crio/{pod.name}")).get("containers")
            and all(c["pid"] for c in p["containers"])
            and p
        )
    )
    for container in detail["containers"]:
        assert container["shares_with_pause"]["net"] is True
        assert container["shares_with_pause"]["pid"] is False


def test_an_exited_container_keeps_its_pid_in_cri_o_and_the_agent_drops_it(
    agent: RunningAgent, driver: CriPodDriver
) -> None:
    pod = run(driver, "stale")
    cid = pod.container_id("app")
    running = agent.wait_for(lambda a: (c := get(a, f"/v1/containers/{cid}")).get("pid") and c)
    driver.stop_container(cid, timeout=0)
    after = verbose(driver, cid)
    assert driver.container_status(cid).status.state == api_pb2.CONTAINER_EXITED
    # CRI-O still names the process that is gone.
    assert after["pid"] == running["pid"]
    seen = agent.wait_for(
        lambda a: (c := get(a, f"/v1/containers/{cid}")).get("state") == "exited" and c
    )
    assert seen["pid"] is None


def test_a_container_started_long_after_it_was_created_keeps_its_pid(
    agent: RunningAgent, driver: CriPodDriver
) -> None:
    # The OCI runtime forks the process at create; a busy kubelet may start it
    # seconds later. The PID is that process's, not a stale one.
    pod = driver.run_pod("slow-start", "crio")
    image = driver.resolve_image(BUSYBOX)
    created = driver.create_container(
        pod, ContainerDef("late", BUSYBOX, command=SLEEP), 0, image.id
    )
    time.sleep(2.5)
    driver.start_container(created.id)
    pid = verbose(driver, created.id)["pid"]
    seen = agent.wait_for(lambda a: (c := get(a, f"/v1/containers/{created.id}")).get("pid") and c)
    assert seen["pid"] == pid


@pytest.fixture(scope="module")
def quiet_crio(lab_dir: Path, lab_images: list[ImageTar]) -> Iterator[PrivateCrio]:
    yield from _crio(lab_dir / "crio-quiet", lab_images, pod_events=False)


def test_without_pod_events_the_agent_relists_and_says_why(
    quiet_crio: PrivateCrio, lab_dir: Path
) -> None:
    settings = Settings(
        cri_endpoint=quiet_crio.endpoint, node_name="lab-node", relist_interval_seconds=0.3
    )
    with (
        running_agent(settings) as agent,
        CriPodDriver(quiet_crio.endpoint, lab_dir / "pods-crio-quiet") as driver,
    ):
        agent.wait_for(lambda a: a.get("/readyz").status_code == 200)
        capabilities = agent.wait_for(
            lambda a: (
                (c := a.get("/v1/node").json()["capabilities"])["change_source_reason"]
                not in (None, "subscribing")
                and c
            )
        )
        assert capabilities["change_source"] == "relist"
        assert "enable_pod_events" in capabilities["change_source_reason"]
        assert capabilities["relist_interval_seconds"] == 0.3
        try:
            pod = run(driver, "relisted")
            agent.wait_for(lambda a: get(a, f"/v1/containers/{pod.container_id('app')}").get("pid"))
        finally:
            driver.remove_all()
