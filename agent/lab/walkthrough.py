"""The lab walkthrough: a private containerd, a few pods, the agent, and what it sees.

Every step prints the ``curl`` a person would type and the agent's answer, so
the output reads as a lesson: sandboxes and their pause processes, the
containers and their host PIDs, one network namespace per pod, a process
traced back to its pod, and a killed container seen exiting with 137.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from agent.lab.containerd import PrivateContainerd
from agent.lab.cri_pods import ContainerDef, CriPodDriver
from agent.lab.errors import LabError
from agent.lab.images import BUSYBOX_IMAGE, build_images, default_cache_dir

SERVE_HELLO = "mkdir -p /www && echo hello > /www/index.html && httpd -f -p 8080 -h /www"
POLL_LOCALHOST = "while true; do wget -qO- http://localhost:8080/; sleep 2; done"

BOLD = "\033[1m" if sys.stdout.isatty() else ""
RESET = "\033[0m" if sys.stdout.isatty() else ""


def say(text: str) -> None:
    print(f"\n{BOLD}== {text}{RESET}", flush=True)


def show(http: httpx.Client, path: str, *, text: bool = True) -> httpx.Response:
    suffix = "?output=text" if text and "?" not in path else ("&output=text" if text else "")
    print(f"$ curl -s {http.base_url}{path}{suffix}", flush=True)
    response = http.get(path + suffix)
    print(response.text.rstrip() if text else response.text[:2000], flush=True)
    return response


@contextlib.contextmanager
def agent_process(endpoint: str, port: int, log_path: Path) -> Iterator[httpx.Client]:
    command = [
        sys.executable,
        "-m",
        "agent",
        "serve",
        "--cri-endpoint",
        endpoint,
        "--port",
        str(port),
        "--node-name",
        "lab-node",
    ]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise LabError(
                    f"the agent exited with {proc.returncode}; see {log_path}:\n"
                    + log_path.read_text()[-2000:]
                )
            with contextlib.suppress(httpx.TransportError):
                if http.get("/readyz").status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise LabError(f"the agent did not become ready in 20s; see {log_path}")
            time.sleep(0.1)
        yield http
    finally:
        http.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _wait(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.05)
    raise LabError("the lab did not reach the expected state in time")


def run(port: int = 8470, keep: bool = False) -> int:
    base = Path(tempfile.mkdtemp(prefix="podlens-lab-"))
    say("Building the lab images from this machine's packages (pause, busybox)")
    images = build_images(default_cache_dir())
    for image in images:
        print(f"  {image.ref}  {'(cached)' if image.cached else ''}")

    say("Starting a private containerd (its own socket, state and pod network)")
    containerd = PrivateContainerd(base / "containerd", images)
    containerd.start()
    print(
        f"  endpoint {containerd.endpoint}  pid {containerd.pid}  bridge {containerd.bridge_name}"
    )
    driver = CriPodDriver(containerd.endpoint, base / "pods")
    try:
        say("Running pods through CRI the way kubelet does (labels, attempts, log paths)")
        web = driver.run_pod(
            "web",
            "shop",
            labels={"app": "web"},
            containers=[
                ContainerDef(
                    "app",
                    BUSYBOX_IMAGE,
                    command=["sh", "-c", SERVE_HELLO],
                ),
                ContainerDef(
                    "poller",
                    BUSYBOX_IMAGE,
                    command=["sh", "-c", POLL_LOCALHOST],
                ),
            ],
        )
        driver.run_pod(
            "node-exporter",
            "monitoring",
            host_network=True,
            containers=[ContainerDef("exporter", BUSYBOX_IMAGE, command=["sleep", "3600"])],
        )
        for pod in ("shop/web (app + poller)", "monitoring/node-exporter (host network)"):
            print(f"  {pod}")

        with agent_process(containerd.endpoint, port, base / "agent.log") as http:
            say("What node is this? Which runtime, which CRI API, how does the agent keep up?")
            show(http, "/v1/node")

            say("Pod sandboxes: one per pod, each held open by a pause process")
            show(http, "/v1/sandboxes")

            say("Containers and their host PIDs")
            show(http, "/v1/containers")

            app_id = web.container_id("app")
            say("One container up close: its process tree, namespaces and mounts")
            show(http, f"/v1/containers/{app_id[:12]}")

            sandbox = http.get(f"/v1/sandboxes/{web.sandbox_id}").json()
            app = http.get(f"/v1/containers/{app_id}").json()
            poller = http.get(f"/v1/containers/{web.container_id('poller')}").json()
            pause_ns = os.readlink(f"/proc/{sandbox['pause_pid']}/ns/net")
            say("The containers of a pod share the pause process's network namespace")
            for who, pid in (
                ("pause", sandbox["pause_pid"]),
                ("app", app["pid"]),
                ("poller", poller["pid"]),
            ):
                print(f"  {who:<7} pid {pid:<7} {os.readlink(f'/proc/{pid}/ns/net')}")
            print(
                f"  -> the poller reaches the app on localhost:8080 because both are in {pause_ns}"
            )

            say("Which pod does a PID belong to? (any process in a container's tree)")
            show(http, f"/v1/processes/{poller['pid']}")

            say("Kill the poller's process as `kill -9` on the node would, and watch the agent")
            print(f"$ kill -9 {poller['pid']}")
            killed_at = time.monotonic()
            os.kill(poller["pid"], signal.SIGKILL)

            def exited() -> bool:
                state = http.get(f"/v1/containers/{poller['id']}").json()["state"]
                return bool(state == "exited")

            _wait(exited)
            print(f"  the agent saw the exit after {(time.monotonic() - killed_at) * 1000:.0f} ms")
            show(http, "/v1/containers?pod=web&name=poller")

            say("The kubelet's part: a new container for the same name, attempt + 1")
            new = driver.restart_container(web, "poller")
            _wait(lambda: http.get(f"/v1/containers/{new.id}").json().get("state") == "running")
            show(http, "/v1/containers?pod=web")
            print(
                "\nThe dead attempt stays listed (exit code 137, reason Error) next to the new one,"
                "\nas kubelet keeps one dead instance per container."
            )
            if keep:
                say(f"Leaving the lab up: agent on {http.base_url} (Ctrl-C to tear down)")
                with contextlib.suppress(KeyboardInterrupt):
                    while True:
                        time.sleep(3600)
    finally:
        say("Tearing down: pods, containerd, bridge, state directories")
        driver.close()
        containerd.stop()
        leftovers = containerd.leftovers()
        shutil.rmtree(base, ignore_errors=True)
        print("  nothing left behind" if not any(leftovers.values()) else f"  left: {leftovers}")
    return 0


def preflight(port: int) -> None:
    """Say clearly what stops the lab from running, before starting anything."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root (it starts containerd, runc and a pod network)")
    for tool, package in (
        ("containerd", "containerd"),
        ("runc", "runc"),
        ("gcc", "gcc"),
        ("busybox", "busybox-static"),
    ):
        if shutil.which(tool) is None and not Path(f"/bin/{tool}").exists():
            raise LabError(f"{tool} is missing: apt-get install -y {package}")
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise LabError(
                f"port {port} on 127.0.0.1 is in use; pick another with --port"
            ) from None
