"""The lab stack the hardening tests share: the fake API server, the lab kubelet,
and the agent as a real subprocess (``python -m agent serve``).

Not a test module (the leading underscore keeps pytest from collecting it).
Everything here is bounded in time: every wait has a deadline, and ``close()``
stops what was started even after a failure, agent first, then the pods,
then the kubelet and the API server.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil

from lab.apiserver import FakeApiServer
from lab.cri_pods import LABEL_POD_NAME, LABEL_POD_NAMESPACE, CriPodDriver
from lab.kubelet import LabKubelet
from lab.processes import REPO_ROOT, log_tail, python_child_env, stop_process

BUSYBOX = "docker.io/library/busybox:latest"
# Exits at once on SIGTERM, so pod deletion is quick.
SLEEP = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
# kubelet's durations run ten times faster in the lab: a 10 s backoff is 1 s.
TIME_SCALE = 0.1

T = TypeVar("T")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(
    predicate: Callable[[], T | None],
    what: str,
    timeout: float = 20.0,
    interval: float = 0.05,
) -> T:
    """Poll ``predicate`` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout:.0f}s (last: {last!r})")


class AgentProcess:
    """``python -m agent serve`` as a child process on a loopback port of its own."""

    def __init__(
        self,
        *,
        cri_endpoint: str,
        node_name: str,
        log_path: Path,
        api_server: str | None = None,
        enable_kill: bool = False,
        kill_namespaces: Sequence[str] = (),
        audit_log: Path | None = None,
        relist_interval: float = 0.5,
        extra_args: Sequence[str] = (),
        port: int | None = None,
        token: str | None = None,
        tls_files: tuple[Path, Path] | None = None,
        log_roots: Sequence[Path] = (),
    ) -> None:
        self.port = port or free_port()
        # The certificate names localhost (and 127.0.0.1); the name is checked.
        self.url = (
            f"https://localhost:{self.port}" if tls_files else f"http://127.0.0.1:{self.port}"
        )
        self.tls_files = tls_files
        self.log_path = log_path
        # The agent opens no log file outside its roots: the lab kubelet's.
        self.env = {"PODLENS_LOG_ROOTS": ",".join(map(str, log_roots))} if log_roots else {}
        args = [
            sys.executable,
            "-m",
            "agent",
            "serve",
            "--cri-endpoint",
            cri_endpoint,
            "--node-name",
            node_name,
            "--port",
            str(self.port),
            "--relist-interval",
            str(relist_interval),
            "--log-level",
            "info",
        ]
        if api_server:
            args += ["--api-server", api_server]
        if enable_kill:
            args.append("--enable-kill")
        if kill_namespaces:
            args += ["--kill-namespaces", ",".join(kill_namespaces)]
        if audit_log is not None:
            args += ["--audit-log", str(audit_log)]
        # Without a token to send, the agent checks none: these tests look at
        # what it serves (tests/test_auth.py and the fuzzing look at the door).
        if token is None:
            args += ["--auth-mode", "none"]
        if tls_files is not None:
            args += ["--tls", "on", "--tls-cert-file", str(tls_files[0])]
            args += ["--tls-key-file", str(tls_files[1])]
        self.args = [*args, *extra_args]
        self.proc: subprocess.Popen[bytes] | None = None
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(
            base_url=self.url, timeout=10.0, headers=self.headers, verify=self.verify()
        )

    def verify(self) -> ssl.SSLContext | bool:
        """What a client checks the agent's certificate against (False for plain HTTP)."""
        if self.tls_files is None:
            return False
        return ssl.create_default_context(cafile=str(self.tls_files[0]))

    # --- lifecycle

    def start(self, timeout: float = 30.0) -> AgentProcess:
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                self.args,
                cwd=REPO_ROOT,
                env={**python_child_env(), **self.env},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                # Signals are the test's to send, not the terminal's.
                start_new_session=True,
            )
        self.wait_healthy(timeout)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_healthy(self, timeout: float = 30.0) -> None:
        def healthy() -> bool:
            if not self.alive():
                raise AssertionError(f"agent exited early:\n{self.log_tail()}")
            try:
                return self.http.get("/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, "agent /healthz", timeout)

    def wait_ready(self, timeout: float = 30.0) -> None:
        def ready() -> bool:
            try:
                return self.http.get("/readyz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, "agent /readyz", timeout)

    def signal_and_wait(self, sig: int, timeout: float) -> tuple[int | None, float]:
        """Send ``sig``; return (exit code or None if still running, seconds waited)."""
        assert self.proc is not None
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        try:
            code: int | None = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = None
        return code, time.monotonic() - t0

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``grace``; only this process, by its PID."""
        with contextlib.suppress(Exception):
            self.http.close()
        if self.proc is not None:
            stop_process(self.proc, grace)

    # --- looking at it

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(path, **kwargs)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    def rss_bytes(self) -> int:
        return int(psutil.Process(self.pid).memory_info().rss)


def pod_manifest(
    namespace: str,
    name: str,
    containers: Iterable[Mapping[str, Any]] | None = None,
    labels: Mapping[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "terminationGracePeriodSeconds": 0,
        "containers": list(containers or [{"name": "c", "image": BUSYBOX, "command": SLEEP}]),
        **spec,
    }
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = dict(labels)
    return {"metadata": meta, "spec": body}


class LabStack:
    """A fake API server on a fixed loopback port and the lab kubelet for one node.

    The API server keeps its port across ``stop_api()``/``start_api()`` and
    ``replace_api()``, so the agent and the kubelet reconnect to the same URL.
    """

    def __init__(self, cri_endpoint: str, root: Path, node_name: str) -> None:
        self.cri_endpoint = cri_endpoint
        self.root = root
        self.node_name = node_name
        self.port = free_port()
        self.api = FakeApiServer(port=self.port, bookmark_interval=0.5)
        self.kubelet: LabKubelet | None = None
        self.created: set[tuple[str, str]] = set()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LabStack:
        self.api.start()
        self.start_kubelet()
        return self

    def start_kubelet(self) -> None:
        kubelet = LabKubelet(
            self.api_url,
            self.cri_endpoint,
            self.node_name,
            self.root / "kubelet",
            time_scale=TIME_SCALE,
            sync_period=0.1,
        )
        kubelet.start()
        self.kubelet = kubelet
        if not kubelet.wait_synced(15):
            raise AssertionError("the lab kubelet did not sync with the API server in 15s")

    def stop_kubelet(self) -> None:
        kubelet, self.kubelet = self.kubelet, None
        if kubelet is not None:
            kubelet.stop()

    def stop_api(self) -> None:
        self.api.stop()

    def start_api(self) -> None:
        self.api.start()

    def replace_api(self, server: FakeApiServer) -> FakeApiServer:
        """Serve ``server`` on the same port instead; returns the one it replaced."""
        old = self.api
        old.stop()
        self.api = server
        server.start()
        return old

    def create_pod(
        self,
        namespace: str,
        name: str,
        containers: Iterable[Mapping[str, Any]] | None = None,
        labels: Mapping[str, str] | None = None,
        **spec: Any,
    ) -> dict[str, Any]:
        self.created.add((namespace, name))
        return self.api.add("pod", pod_manifest(namespace, name, containers, labels, **spec))

    def delete_pod(self, namespace: str, name: str) -> None:
        self.api.delete("pod", namespace, name)

    def close(self) -> None:
        """Delete every pod, let the kubelet remove them, stop it and the API server."""
        try:
            if self.kubelet is not None and self.api_serving():
                for pod in self.api.list_objects("pod"):
                    meta = pod["metadata"]
                    with contextlib.suppress(Exception):
                        self.api.delete("pod", meta["namespace"], meta["name"])
                deadline = time.monotonic() + 20
                while self.kubelet.pod_uids and time.monotonic() < deadline:
                    time.sleep(0.1)
        finally:
            self.stop_kubelet()
            with contextlib.suppress(Exception):
                self.api.stop()
            self._remove_leftovers()

    def api_serving(self) -> bool:
        try:
            return self.api.port > 0
        except RuntimeError:
            return False

    def _remove_leftovers(self) -> None:
        """Whatever the kubelet did not remove, removed through CRI (only this stack's pods)."""
        driver = CriPodDriver(self.cri_endpoint, self.root / "cleanup")
        try:
            for namespace, name in self.created:
                labels = {LABEL_POD_NAMESPACE: namespace, LABEL_POD_NAME: name}
                for sandbox in driver.list_sandboxes(labels):
                    with contextlib.suppress(Exception):
                        driver.stop_sandbox(sandbox.id)
                    with contextlib.suppress(Exception):
                        driver.remove_sandbox(sandbox.id)
        except Exception:  # the runtime itself may be gone; nothing more to do
            pass
        finally:
            driver.close()


__all__ = [
    "BUSYBOX",
    "SLEEP",
    "TIME_SCALE",
    "AgentProcess",
    "LabStack",
    "free_port",
    "pod_manifest",
    "wait_for",
]
