"""The lab's nginx image: built from the machine's nginx package, run as a pod.

Requests go to the pod's own localhost from inside its network namespace
(the lab bridge has no route from the host), the way a sidecar or
``kubectl exec ... curl localhost`` reaches nginx in a cluster.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cri_proto import api_pb2
from lab.containerd import PrivateContainerd
from lab.cri_pods import ContainerDef, CriPodDriver, PodHandle
from lab.errors import LabError
from lab.images import (
    NGINX_IMAGE,
    NGINX_IMAGE_1_27,
    ImageTar,
    build_image,
    default_cache_dir,
    import_images,
    nginx_recipe,
)
from tests.conftest import lab_unavailable

pytestmark = pytest.mark.containerd

FETCH = """
import sys, urllib.request
with urllib.request.urlopen("http://localhost:80/", timeout=5) as r:
    sys.stdout.write(f"{r.status}\\n{r.read().decode()}")
"""


@pytest.fixture(scope="module")
def nginx_image(containerd: PrivateContainerd) -> ImageTar:
    cache = os.environ.get("PODLENS_IMAGE_CACHE")
    try:
        image = build_image(nginx_recipe(), Path(cache) if cache else default_cache_dir())
    except LabError as exc:
        lab_unavailable(f"the nginx image could not be built: {exc}")
        raise
    import_images(containerd.address, [image])
    return image


def fetch_in_netns(pause_pid: int) -> tuple[int, str]:
    proc = subprocess.run(
        ["nsenter", f"--net=/proc/{pause_pid}/ns/net", sys.executable, "-c", FETCH],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    status, _, body = proc.stdout.partition("\n")
    return int(status), body


def exec_sync(driver: CriPodDriver, container_id: str, cmd: list[str]) -> tuple[int, str]:
    resp = driver.runtime.ExecSync(
        api_pb2.ExecSyncRequest(container_id=container_id, cmd=cmd, timeout=10), timeout=20
    )
    return resp.exit_code, resp.stdout.decode(errors="replace")


def wait_listening(pause_pid: int, timeout: float = 10.0) -> None:
    """nginx binds a moment after its container starts."""
    deadline = time.monotonic() + timeout
    probe = "import socket; socket.create_connection(('127.0.0.1', 80), timeout=1).close()"
    while True:
        proc = subprocess.run(
            ["nsenter", f"--net=/proc/{pause_pid}/ns/net", sys.executable, "-c", probe],
            capture_output=True,
            timeout=10,
            check=False,
        )
        if proc.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing listens on port 80 in the pod: {proc.stderr!r}")
        time.sleep(0.1)


def test_recipe_is_cached_by_its_inputs(tmp_path: Path) -> None:
    first = build_image(nginx_recipe(), tmp_path)
    again = build_image(nginx_recipe(), tmp_path)
    assert not first.cached
    assert again.cached
    assert first.image_id == again.image_id
    assert first.tags == (NGINX_IMAGE, NGINX_IMAGE_1_27)


def test_nginx_pod_serves_welcome_page_and_logs_the_request(
    nginx_image: ImageTar,
    cri_driver: CriPodDriver,
    lab_pod: Callable[..., PodHandle],
) -> None:
    # Short names resolve the way kubelet's do: nginx -> docker.io/library/nginx:latest.
    pod = lab_pod(
        "nginx-image",
        containers=[
            ContainerDef("web", "nginx"),
            ContainerDef("pinned", "nginx:1.27", command=["sleep", "3600"]),
        ],
    )
    pause_pid = cri_driver.sandbox_pid(pod.sandbox_id)
    assert pause_pid is not None
    web_id = pod.container_id("web")
    wait_listening(pause_pid)

    status, body = fetch_in_netns(pause_pid)

    assert status == 200
    assert "<title>Welcome to nginx!</title>" in body
    code, log = exec_sync(cri_driver, web_id, ["cat", "/var/log/nginx/access.log"])
    assert code == 0
    lines = log.splitlines()
    assert len(lines) == 1, lines
    assert '"GET / HTTP/1.1" 200' in lines[0]
    assert "Python-urllib" in lines[0]


def test_nginx_runs_in_the_foreground_with_a_www_data_worker(
    nginx_image: ImageTar,
    cri_driver: CriPodDriver,
    lab_pod: Callable[..., PodHandle],
) -> None:
    pod = lab_pod("nginx-procs", containers=[ContainerDef("web", "nginx")])
    master = cri_driver.container_pid(pod.container_id("web"))
    assert master is not None
    pause_pid = cri_driver.sandbox_pid(pod.sandbox_id)
    assert pause_pid is not None
    wait_listening(pause_pid)

    # The container's own process is the master: it did not fork into the
    # background, so the runtime sees nginx exit when it does.
    assert b"nginx: master process" in Path(f"/proc/{master}/cmdline").read_bytes()
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    assert len(children) == 1
    worker_status = Path(f"/proc/{children[0]}/status").read_text()
    uid_line = next(line for line in worker_status.splitlines() if line.startswith("Uid:"))
    # www-data is uid 33 in the image's /etc/passwd.
    assert uid_line.split()[1:] == ["33", "33", "33", "33"]
    code, _ = exec_sync(cri_driver, pod.container_id("web"), ["test", "-s", "/run/nginx.pid"])
    assert code == 0
