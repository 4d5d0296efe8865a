"""The lab node itself: images, the private containerd, the kubelet-like driver.

Everything is checked through CRI with the raw stubs, so these tests hold
the lab to what a real node shows, independently of the agent's adapters.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from cri_proto import api_pb2, api_pb2_grpc
from lab.containerd import PrivateContainerd
from lab.cri_pods import ContainerDef, CriPodDriver, PodHandle
from lab.images import (
    BUSYBOX_IMAGE,
    PAUSE_IMAGE,
    ImageTar,
    build_images,
    busybox_recipe,
    pause_recipe,
)

pytestmark = pytest.mark.containerd

CRI_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z (stdout|stderr) [FP] (.*)$")

SLEEPER = ContainerDef("sleeper", "busybox", command=["sleep", "3600"])
GREETER = ContainerDef("greeter", "busybox:1.37", command=["sh", "-c", "echo hello; sleep 3600"])


@pytest.fixture(scope="module")
def cri(containerd: PrivateContainerd) -> Iterator[api_pb2_grpc.RuntimeServiceStub]:
    channel = grpc.insecure_channel(
        containerd.endpoint, options=[("grpc.max_reconnect_backoff_ms", 1000)]
    )
    yield api_pb2_grpc.RuntimeServiceStub(channel)
    channel.close()


def verbose_pid(info: dict[str, str]) -> int:
    return int(json.loads(info["info"])["pid"])


def container_status(
    cri: api_pb2_grpc.RuntimeServiceStub, cid: str
) -> tuple[api_pb2.ContainerStatus, int]:
    resp = cri.ContainerStatus(
        api_pb2.ContainerStatusRequest(container_id=cid, verbose=True),
        timeout=5,
        wait_for_ready=True,
    )
    return resp.status, verbose_pid(dict(resp.info))


def sandbox_status(
    cri: api_pb2_grpc.RuntimeServiceStub, sid: str
) -> tuple[api_pb2.PodSandboxStatus, int]:
    resp = cri.PodSandboxStatus(
        api_pb2.PodSandboxStatusRequest(pod_sandbox_id=sid, verbose=True),
        timeout=5,
        wait_for_ready=True,
    )
    return resp.status, verbose_pid(dict(resp.info))


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def process_gone(pid: int) -> Callable[[], bool]:
    return lambda: not Path(f"/proc/{pid}").exists()


# ------------------------------------------------------------------ images


def test_images_are_reproducible_and_cached(tmp_path: Path, lab_images: list[ImageTar]) -> None:
    first = build_images(tmp_path, [pause_recipe(), busybox_recipe()])
    again = build_images(tmp_path, [pause_recipe(), busybox_recipe()])
    assert [i.cached for i in first] == [False, False]
    assert [i.cached for i in again] == [True, True]
    # Same inputs give the same image ID here and in the session cache.
    assert [i.image_id for i in first] == [i.image_id for i in again]
    assert [i.image_id for i in first] == [i.image_id for i in lab_images]
    tags = {t for i in lab_images for t in i.tags}
    assert {PAUSE_IMAGE, BUSYBOX_IMAGE, "docker.io/library/busybox:1.37"} <= tags


# ------------------------------------------------------------------ pods


def test_two_container_pod_looks_like_kubelets(
    cri: api_pb2_grpc.RuntimeServiceStub, lab_pod: Callable[..., PodHandle]
) -> None:
    pod = lab_pod("bed-two", "lab-ns", containers=[SLEEPER, GREETER], labels={"app": "bed"})

    sandbox, pause_pid = sandbox_status(cri, pod.sandbox_id)
    assert sandbox.state == api_pb2.SANDBOX_READY
    assert sandbox.metadata.name == "bed-two"
    assert sandbox.metadata.namespace == "lab-ns"
    assert sandbox.metadata.uid == pod.uid
    assert sandbox.metadata.attempt == 0
    assert dict(sandbox.labels) == {
        "app": "bed",
        "io.kubernetes.pod.name": "bed-two",
        "io.kubernetes.pod.namespace": "lab-ns",
        "io.kubernetes.pod.uid": pod.uid,
    }
    assert sandbox.annotations["kubernetes.io/config.source"] == "api"
    assert "kubernetes.io/config.seen" in sandbox.annotations
    assert sandbox.network.ip, "a pod-network sandbox gets an address from the lab bridge"
    assert sandbox.linux.namespaces.options.network == api_pb2.POD
    assert pause_pid > 0

    listed = cri.ListContainers(
        api_pb2.ListContainersRequest(
            filter=api_pb2.ContainerFilter(pod_sandbox_id=pod.sandbox_id)
        ),
        timeout=5,
    ).containers
    assert {c.metadata.name for c in listed} == {"sleeper", "greeter"}

    pause_net = os.readlink(f"/proc/{pause_pid}/ns/net")
    assert pause_net != os.readlink("/proc/self/ns/net")
    for name in ("sleeper", "greeter"):
        cid = pod.container_id(name)
        status, pid = container_status(cri, cid)
        assert status.state == api_pb2.CONTAINER_RUNNING
        assert status.metadata.name == name
        assert status.metadata.attempt == 0
        assert dict(status.labels) == {
            "io.kubernetes.container.name": name,
            "io.kubernetes.pod.name": "bed-two",
            "io.kubernetes.pod.namespace": "lab-ns",
            "io.kubernetes.pod.uid": pod.uid,
        }
        ann = status.annotations
        assert ann["io.kubernetes.container.restartCount"] == "0"
        assert ann["io.kubernetes.container.terminationMessagePath"] == "/dev/termination-log"
        assert ann["io.kubernetes.container.terminationMessagePolicy"] == "File"
        assert ann["io.kubernetes.pod.terminationGracePeriod"] == "30"
        assert re.fullmatch(r"[0-9a-f]+", ann["io.kubernetes.container.hash"])
        assert status.log_path == str(pod.log_directory / name / "0.log")
        assert pod.log_directory.name == f"lab-ns_bed-two_{pod.uid}"
        assert status.image_ref.startswith("sha256:")

        assert pid > 0
        assert os.readlink(f"/proc/{pid}/ns/net") == pause_net
        assert cid in Path(f"/proc/{pid}/cgroup").read_text()

    greeter_log = Path(container_status(cri, pod.container_id("greeter"))[0].log_path)
    wait_for(lambda: greeter_log.exists() and "hello" in greeter_log.read_text())
    lines = greeter_log.read_text().splitlines()
    matches = [CRI_LOG_LINE.match(line) for line in lines]
    assert all(matches), lines
    assert [(m.group(2), m.group(3)) for m in matches if m] == [("stdout", "hello")]
    assert (pod.log_directory / "sleeper" / "0.log").exists()


def test_restart_container_gives_attempt_one(
    cri: api_pb2_grpc.RuntimeServiceStub,
    cri_driver: CriPodDriver,
    lab_pod: Callable[..., PodHandle],
) -> None:
    pod = lab_pod("bed-restart", containers=[GREETER])
    old_id = pod.container_id("greeter")

    new = cri_driver.restart_container(pod, "greeter")

    assert new.id != old_id
    assert new.attempt == 1
    status, pid = container_status(cri, new.id)
    assert status.state == api_pb2.CONTAINER_RUNNING
    assert pid > 0
    assert status.metadata.attempt == 1
    assert status.annotations["io.kubernetes.container.restartCount"] == "1"
    assert status.log_path.endswith("/greeter/1.log")
    old, old_pid = container_status(cri, old_id)
    assert old.state == api_pb2.CONTAINER_EXITED
    assert old_pid == 0
    wait_for(lambda: "hello" in Path(status.log_path).read_text())

    # Kubelet's GC keeps one dead instance per container: attempt 0 goes now.
    third = cri_driver.restart_container(pod, "greeter")
    assert third.attempt == 2
    names = cri.ListContainers(
        api_pb2.ListContainersRequest(
            filter=api_pb2.ContainerFilter(pod_sandbox_id=pod.sandbox_id)
        ),
        timeout=5,
    ).containers
    assert sorted(c.metadata.attempt for c in names) == [1, 2]


def test_sigkilled_container_exits_137_with_reason_error(
    cri: api_pb2_grpc.RuntimeServiceStub, lab_pod: Callable[..., PodHandle]
) -> None:
    pod = lab_pod("bed-kill", containers=[SLEEPER])
    cid = pod.container_id("sleeper")
    _, pid = container_status(cri, cid)

    os.kill(pid, signal.SIGKILL)

    wait_for(lambda: container_status(cri, cid)[0].state == api_pb2.CONTAINER_EXITED)
    status, pid_after = container_status(cri, cid)
    assert status.exit_code == 137
    assert status.reason == "Error"
    assert pid_after == 0
    assert status.finished_at >= status.started_at > 0


def test_host_network_pod(
    cri: api_pb2_grpc.RuntimeServiceStub, lab_pod: Callable[..., PodHandle]
) -> None:
    pod = lab_pod("bed-hostnet", "kube-system", containers=[SLEEPER], host_network=True)

    sandbox, pause_pid = sandbox_status(cri, pod.sandbox_id)
    assert sandbox.state == api_pb2.SANDBOX_READY
    assert sandbox.linux.namespaces.options.network == api_pb2.NODE
    status, pid = container_status(cri, pod.container_id("sleeper"))
    assert status.state == api_pb2.CONTAINER_RUNNING
    host_net = os.readlink("/proc/self/ns/net")
    assert os.readlink(f"/proc/{pid}/ns/net") == host_net
    assert os.readlink(f"/proc/{pause_pid}/ns/net") == host_net


def test_containerd_restart_keeps_pods(
    cri: api_pb2_grpc.RuntimeServiceStub,
    containerd: PrivateContainerd,
    cri_driver: CriPodDriver,
    lab_pod: Callable[..., PodHandle],
) -> None:
    pod = lab_pod("bed-survivor", containers=[SLEEPER])
    _, pid_before = container_status(cri, pod.container_id("sleeper"))
    old_daemon = containerd.pid

    containerd.kill()
    assert not containerd.is_running()
    # The pod outlives the runtime daemon, as on a real node.
    os.kill(pid_before, 0)
    containerd.start()

    assert containerd.pid not in (None, old_daemon)
    sandboxes = cri.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10).items
    assert pod.sandbox_id in {s.id for s in sandboxes}
    sandbox, _ = sandbox_status(cri, pod.sandbox_id)
    assert sandbox.state == api_pb2.SANDBOX_READY
    status, pid_after = container_status(cri, pod.container_id("sleeper"))
    assert status.state == api_pb2.CONTAINER_RUNNING
    assert pid_after == pid_before
    # The driver's own channel recovers too.
    assert cri_driver.container_pid(pod.container_id("sleeper")) == pid_before


# ------------------------------------------------------------------ teardown


def _leftover_check(instance: PrivateContainerd) -> None:
    left = instance.leftovers()
    assert left == {"processes": [], "mounts": [], "bridge": [], "files": []}
    assert not instance.state_dir.exists()
    assert not instance.root_dir.exists()
    shims = subprocess.run(["pgrep", "-af", instance.address], capture_output=True, text=True)
    assert shims.stdout.strip() == ""


@pytest.mark.parametrize("daemon_crashed", [False, True], ids=["graceful", "after-crash"])
def test_stop_leaves_nothing_behind(
    tmp_path_factory: pytest.TempPathFactory,
    lab_images: list[ImageTar],
    containerd: PrivateContainerd,
    daemon_crashed: bool,
) -> None:
    # A second instance beside the session one: own socket, runc root, bridge.
    instance = PrivateContainerd(tmp_path_factory.mktemp("own"), lab_images)
    with instance:
        assert instance.bridge_name != containerd.bridge_name
        driver = CriPodDriver(instance.endpoint, instance.base_dir / "pods")
        with driver:
            pods = [
                driver.run_pod("net", containers=[SLEEPER, GREETER]),
                driver.run_pod("host", containers=[SLEEPER], host_network=True),
            ]
            pids = [driver.container_pid(cid) for p in pods for cid in p.container_ids.values()]
        assert all(pids)
        assert instance.leftovers()["bridge"] == [instance.bridge_name]
        assert instance.leftovers()["mounts"]
        if daemon_crashed:
            instance.kill(graceful=False)
    _leftover_check(instance)
    for pid in pids:
        assert pid is not None
        wait_for(process_gone(pid), timeout=5)
    instance.stop()  # idempotent
    # The session instance is untouched by the other one's teardown.
    assert containerd.is_running()
