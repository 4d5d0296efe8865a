"""The lab the benchmarks run against, on top of ``bench._harness``.

A private containerd with pods made over CRI (``Lab``), and the processes
of a node as children of the benchmark: the agent, the lab's API server and
the lab kubelet. On the way out the processes stop first, then the pods go
(in parallel, through CRI), then containerd itself.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import select
import shutil
import ssl
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import psutil

from bench._harness import Child, free_port, log, signals_held
from cri_proto import api_pb2, api_pb2_grpc
from lab.containerd import PrivateContainerd
from lab.cri_pods import ContainerDef, CriPodDriver, PodHandle
from lab.errors import LabError
from lab.images import BUSYBOX_IMAGE, build_images, default_cache_dir

# What a lab benchmark reports as "could not run" (exit 2) rather than a traceback.
LAB_ERRORS: tuple[type[BaseException], ...] = (LabError, grpc.RpcError)
# The agent's --node-name: the node the pods of the API server are bound to.
NODE = "bench"


# --------------------------------------------------------------------- the lab


def lab_problem() -> str | None:
    """Why the lab cannot run on this machine, or None."""
    if os.geteuid() != 0:
        return "the benchmark runs a private containerd and needs root"
    for tool in ("containerd", "runc", "ctr"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install -y containerd runc)"
    return None


class Lab:
    """A private containerd, and pods made on it by one CRI pod driver per worker.

    Use as a context manager; leaving it removes the pods and stops containerd
    even when the body failed.
    """

    def __init__(self, workers: int = 4) -> None:
        self.workers = max(1, workers)
        # Short: the containerd socket path has to fit in a sockaddr_un.
        self.base = Path(tempfile.mkdtemp(prefix="plb-", dir="/tmp"))
        self.containerd: PrivateContainerd | None = None
        self.drivers: list[CriPodDriver] = []
        self.pods: list[PodHandle] = []

    @property
    def endpoint(self) -> str:
        """The private containerd's CRI endpoint."""
        assert self.containerd is not None
        return self.containerd.endpoint

    def __enter__(self) -> Lab:
        try:
            cache = os.environ.get("PODLENS_IMAGE_CACHE")
            images = build_images(Path(cache) if cache else default_cache_dir())
            self.containerd = PrivateContainerd(self.base / "containerd", images)
            self.containerd.start()
            # A grpc channel is thread-safe, but PodHandle bookkeeping in the
            # driver is not meant to be shared: one driver per worker thread.
            self.drivers = [
                CriPodDriver(self.containerd.endpoint, self.base / "pods")
                for _ in range(self.workers)
            ]
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        try:
            self.close()
        except LabError as teardown:
            if exc is None:
                raise
            # The body's failure is the one to report; this one comes after it.
            print(f"teardown after the failure: {teardown}", file=sys.stderr)

    def create_pods(
        self, count: int, *, namespace: str = "bench", prefix: str = "bench"
    ) -> list[PodHandle]:
        """``count`` pods on the pod network, two ``sleep 3600`` busybox containers each."""
        containers = [
            ContainerDef("main", BUSYBOX_IMAGE, command=["sleep", "3600"]),
            ContainerDef("sidecar", BUSYBOX_IMAGE, command=["sleep", "3600"]),
        ]

        def make(worker: int) -> list[PodHandle]:
            driver = self.drivers[worker]
            made = []
            for i in range(worker, count, self.workers):
                made.append(
                    driver.run_pod(
                        f"{prefix}-{i:03d}",
                        namespace,
                        containers=containers,
                        labels={"app": prefix},
                    )
                )
            return made

        with ThreadPoolExecutor(self.workers, thread_name_prefix="pods") as pool:
            futures = [pool.submit(make, w) for w in range(self.workers)]
            handles = [h for f in futures for h in f.result()]
        self.pods.extend(handles)
        return handles

    def close(self) -> None:
        """Remove the pods and stop containerd, with Ctrl-C and SIGTERM held off."""
        with signals_held():
            self._close()

    def _close(self) -> None:
        problems: list[str] = []
        try:
            # In parallel while containerd answers; if it died, the drivers'
            # calls would only wait out their deadlines, and stop() below
            # kills and unmounts what is left.
            running = self.containerd is not None and self.containerd.is_running()
            if self.drivers and running:
                with ThreadPoolExecutor(len(self.drivers), thread_name_prefix="rm") as pool:
                    for result in pool.map(CriPodDriver.remove_all, self.drivers):
                        problems.extend(result)
        finally:
            for driver in self.drivers:
                with contextlib.suppress(Exception):
                    driver.close()
            self.drivers = []
            try:
                if self.containerd is not None:
                    # Also removes whatever the drivers could not.
                    self.containerd.stop()
            finally:
                shutil.rmtree(self.base, ignore_errors=True)
        if problems:
            log(f"pods not removed by their drivers (containerd.stop() removed them): {problems}")


# --------------------------------------------------------------------- node processes


@dataclass(frozen=True, slots=True)
class AgentDoor:
    """How the DaemonSet's agent is reached: TLS with this certificate, this bearer token."""

    cert: Path
    key: Path
    token: str

    @classmethod
    def make(cls, directory: Path, token: str) -> AgentDoor:
        """A self-signed certificate for 127.0.0.1 in ``directory``, and ``token`` to send."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "podlens bench")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
            .sign(key, hashes.SHA256())
        )
        door = cls(directory / "agent.crt", directory / "agent.key", token)
        door.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        door.key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        door.key.chmod(0o600)
        return door

    def args(self) -> list[str]:
        """The agent's flags: TLS on with the certificate, tokens checked by the API server."""
        return [
            "--tls",
            "on",
            "--tls-cert-file",
            str(self.cert),
            "--tls-key-file",
            str(self.key),
            "--auth-mode",
            "kubernetes",
        ]

    def client_options(self, token: str | None = None) -> dict[str, Any]:
        """httpx options of a client that verifies the certificate and sends a token."""
        return {
            "verify": ssl.create_default_context(cafile=str(self.cert)),
            "headers": {"Authorization": f"Bearer {token if token is not None else self.token}"},
        }


class AgentProcess(Child):
    """``python -m agent serve`` on a loopback port of its own, as node ``NODE``.

    Without ``door`` it serves plain HTTP with no auth (what most benchmarks
    measure: the agent's own work); with one, as the DaemonSet runs it: TLS,
    and every request's token reviewed by the API server (``--api-server``
    among ``extra_args``).
    """

    def __init__(
        self,
        endpoint: str,
        log_dir: Path,
        *,
        extra_args: Sequence[str] = (),
        name: str = "agent",
        door: AgentDoor | None = None,
    ) -> None:
        self.port = free_port()
        self.door = door
        self.url = f"{'https' if door else 'http'}://127.0.0.1:{self.port}"
        args = [
            "agent",
            "serve",
            "--cri-endpoint",
            endpoint,
            "--port",
            str(self.port),
            "--node-name",
            NODE,
            "--log-level",
            "warning",
            *(door.args() if door else ["--auth-mode", "none"]),
            *extra_args,
        ]
        super().__init__(name, args, log_dir / f"{name}.log", grace=10.0)
        self.ps = psutil.Process(self.pid)
        self.http: httpx.Client = httpx.Client(
            base_url=self.url, timeout=10.0, **(door.client_options() if door else {})
        )

    def client_options(self, token: str | None = None) -> dict[str, Any]:
        """httpx options for another client of this agent (``token`` instead of the door's)."""
        return self.door.client_options(token) if self.door else {}

    def wait_ready(self, timeout: float = 30.0) -> float:
        """Wait for ``/readyz`` to answer 200; returns the seconds it took."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(
                    f"{self.name} exited with code {self.proc.returncode} before it was ready:\n"
                    + self.log_tail()
                )
            try:
                response = self.http.get("/readyz")
            except httpx.TransportError as exc:
                last = repr(exc)
            else:
                if response.status_code == 200:
                    return time.monotonic() - t0
                last = f"{response.status_code} {response.text[:200]}"
            time.sleep(0.05)
        raise RuntimeError(
            f"{self.name} not ready within {timeout:.0f}s ({last}):\n" + self.log_tail()
        )

    def rss_bytes(self) -> int:
        """Its resident set size."""
        return int(self.ps.memory_info().rss)

    def cpu_seconds(self) -> float:
        """User + system CPU seconds so far (clock ticks)."""
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def thread_cpu(self) -> dict[int, tuple[str, float]]:
        """On-CPU seconds of each live thread, with its name.

        From ``/proc/<pid>/task/<tid>/schedstat`` (nanoseconds): per-thread
        ``cpu_times`` are in clock ticks and too coarse for an idle process.
        """
        found = {}
        task_dir = Path(f"/proc/{self.pid}/task")
        for entry in task_dir.iterdir():
            try:
                name = (entry / "comm").read_text().strip()
                on_cpu_ns = int((entry / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            found[int(entry.name)] = (name, on_cpu_ns / 1e9)
        return found


class ApiServerProcess(Child):
    """``python -m lab.apiserver``: its URL is the first line it prints."""

    def __init__(
        self,
        log_dir: Path,
        *,
        seed: Sequence[dict[str, Any]] = (),
        bookmark_interval: float = 1.0,
        start_timeout: float = 20.0,
        tokens: dict[str, dict[str, Any] | None] | None = None,
        allow: Sequence[str] = (),
    ) -> None:
        """``tokens`` and ``allow`` answer the agent's TokenReviews and SubjectAccessReviews
        (``python -m lab.apiserver --help`` has their forms)."""
        args = ["lab.apiserver", "--port", "0", "--bookmark-interval", str(bookmark_interval)]
        if seed:
            seed_path = log_dir / "apiserver-seed.json"
            seed_path.write_text(json.dumps(list(seed)))
            args += ["--seed", str(seed_path)]
        if tokens is not None:
            tokens_path = log_dir / "apiserver-tokens.json"
            tokens_path.write_text(json.dumps(tokens))
            tokens_path.chmod(0o600)
            args += ["--tokens-file", str(tokens_path)]
        for rule in allow:
            args += ["--allow", rule]
        super().__init__("apiserver", args, log_dir / "apiserver.log", pipe_stdout=True)
        self.url = self._read_url(start_timeout)
        self.http: httpx.Client = httpx.Client(base_url=self.url, timeout=10.0)

    def _read_url(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline().decode().strip() if ready else ""
        if not line.startswith("http://"):
            self.terminate()
            raise RuntimeError(f"the lab API server did not start:\n{self.log_tail()}")
        return line

    def create_pod(self, pod: dict[str, Any]) -> dict[str, Any]:
        """POST a pod; the object as created."""
        namespace = pod["metadata"].get("namespace", "default")
        response = self.http.post(f"/api/v1/namespaces/{namespace}/pods", json=pod)
        response.raise_for_status()
        created: dict[str, Any] = response.json()
        return created


class KubeletProcess(Child):
    """``python -m lab.kubelet`` for node ``NODE``; SIGTERM stops it and leaves the pods."""

    def __init__(
        self,
        log_dir: Path,
        *,
        api_url: str,
        cri_endpoint: str,
        root: Path,
        time_scale: float,
        sync_period: float = 1.0,
    ) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.sync_period = sync_period
        self.time_scale = time_scale
        args = [
            "lab.kubelet",
            "--api-server",
            api_url,
            "--cri-endpoint",
            cri_endpoint,
            "--node-name",
            NODE,
            "--root",
            str(root),
            "--time-scale",
            str(time_scale),
            "--sync-period",
            str(sync_period),
        ]
        super().__init__("kubelet", args, log_dir / "kubelet.log")


def remove_all_pods(endpoint: str, workers: int = 8, timeout: float = 60.0) -> list[str]:
    """Stop and remove every sandbox of the runtime, several at once; the IDs that failed.

    For pods a kubelet made (the ``Lab`` drivers only remove their own):
    one at a time, 110 pods can take longer than containerd's own teardown
    allows on a busy machine.
    """
    with grpc.insecure_channel(endpoint) as channel:
        stub = api_pb2_grpc.RuntimeServiceStub(channel)
        try:
            sandboxes = stub.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10).items
        except grpc.RpcError:
            return ["<list failed>"]

        def remove(sandbox_id: str) -> str | None:
            try:
                stub.StopPodSandbox(
                    api_pb2.StopPodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=timeout
                )
                stub.RemovePodSandbox(
                    api_pb2.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=timeout
                )
            except grpc.RpcError:
                return sandbox_id
            return None

        with ThreadPoolExecutor(workers, thread_name_prefix="rm-pods") as pool:
            return [i for i in pool.map(remove, [s.id for s in sandboxes]) if i is not None]


@contextlib.contextmanager
def pods_removed_on_exit(endpoint: str) -> Iterator[None]:
    """On the way out, remove every pod through CRI (enter it before starting a kubelet)."""
    try:
        yield
    finally:
        with signals_held():
            failed = remove_all_pods(endpoint)
        if failed:
            log(f"{len(failed)} sandboxes not removed through CRI (containerd.stop() follows)")
