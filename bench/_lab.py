"""What the benchmarks share: a private containerd with N pods, the agent as a
subprocess, and small statistics helpers.

Everything started here is stopped in ``finally`` blocks: the agent processes
first, then the pods (in parallel, through CRI), then containerd itself.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType

import httpx
import psutil

from lab.containerd import PrivateContainerd
from lab.cri_pods import ContainerDef, CriPodDriver, PodHandle
from lab.errors import LabError
from lab.images import BUSYBOX_IMAGE, build_images, default_cache_dir

REPO_ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024

_T0 = time.monotonic()


def log(message: str) -> None:
    """Progress for the person watching; the results go to stdout."""
    print(f"[{time.monotonic() - _T0:6.1f}s] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------- stats


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (``q`` in 0..100), as numpy's default."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = math.ceil(pos)
    if lo == hi:
        return ordered[lo]
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def latency_summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values),
    }


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --------------------------------------------------------------------- signals


class Terminated(Exception):
    """SIGTERM arrived: unwind so every ``finally`` runs."""


def raise_on_sigterm() -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Ignore Ctrl-C and SIGTERM while tearing down, so teardown is never cut short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in saved:
        signal.signal(sig, signal.SIG_IGN)
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


# --------------------------------------------------------------------- the lab


def lab_problem() -> str | None:
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


# --------------------------------------------------------------------- the agent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class AgentProcess:
    """``python -m agent serve`` as a child process, on a loopback port of its own."""

    def __init__(
        self, endpoint: str, log_dir: Path, *, extra_args: Sequence[str] = (), name: str = "agent"
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        cmd = [
            sys.executable,
            "-m",
            "agent",
            "serve",
            "--cri-endpoint",
            endpoint,
            "--port",
            str(self.port),
            "--node-name",
            "bench",
            "--log-level",
            "warning",
            *extra_args,
        ]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                cmd,
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                # A Ctrl-C goes to the benchmark, which then stops us in order.
                start_new_session=True,
            )
        self.ps = psutil.Process(self.proc.pid)
        self.http = httpx.Client(base_url=self.url, timeout=10.0)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def wait_ready(self, timeout: float = 30.0) -> float:
        """Wait for ``/readyz`` to answer 200; returns the seconds it took."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
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
        return int(self.ps.memory_info().rss)

    def cpu_seconds(self) -> float:
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

    def terminate(self, grace: float = 10.0) -> None:
        with contextlib.suppress(Exception):
            self.http.close()
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


@contextlib.contextmanager
def agents_stopped_on_exit() -> Iterator[list[AgentProcess]]:
    """A list to put started agents in; every one is terminated on the way out."""
    started: list[AgentProcess] = []
    try:
        yield started
    finally:
        with signals_held():
            for agent in reversed(started):
                agent.terminate()
