"""Helpers shared by the pod, diagnosis and heal benchmarks.

Results bookkeeping (targets and checks, the summary and the exit status),
HTTP latency sampling, and the lab's API server and kubelet run as child
processes, each stopped by its own PID on the way out.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import httpx
import psutil

from bench._lab import REPO_ROOT, format_table, latency_summary, log, ms, signals_held
from cri_proto import api_pb2, api_pb2_grpc

T = TypeVar("T")


# --------------------------------------------------------------------- results


@dataclass
class Outcome:
    """Targets and checks, collected as the run goes."""

    summary: list[tuple[str, str, str, str]] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)
    failed_checks: list[str] = field(default_factory=list)
    passed_checks: list[str] = field(default_factory=list)

    def target(self, metric: str, measured: str, target: str, ok: bool) -> None:
        self.summary.append((metric, measured, target, "ok" if ok else "MISSED"))
        if not ok:
            self.missed.append(f"{metric}: {measured} (target {target})")

    def check(self, what: str, ok: bool, detail: str = "") -> bool:
        if ok:
            self.passed_checks.append(what)
        else:
            self.failed_checks.append(f"{what}: {detail}" if detail else what)
        return ok


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min)"


def section(title: str) -> None:
    print()
    print(title)
    print("=" * len(title))
    sys.stdout.flush()


def finish(outcome: Outcome, elapsed: float) -> int:
    """Print the summary table, the checks and the verdict; return the exit status."""
    section("Summary")
    print(format_table(["metric", "measured", "target", "result"], outcome.summary))
    print(
        f"\nchecks passed: {len(outcome.passed_checks)}, failed: {len(outcome.failed_checks)}"
        f"\nwhole run: {elapsed:.0f} s on {psutil.cpu_count()} CPUs; load average at the end "
        f"{load_average()}"
    )
    status = 0
    if outcome.failed_checks:
        print("\nCHECKS FAILED:")
        for item in outcome.failed_checks:
            print(f"  - {item}")
        status = 2
    if outcome.missed:
        print("\nTARGETS MISSED:")
        for item in outcome.missed:
            print(f"  - {item}")
        status = status or 1
    if status == 0:
        print("\nall targets met, all checks passed")
    sys.stdout.flush()
    return status


# --------------------------------------------------------------------- HTTP timing


def time_get(
    http: httpx.Client,
    path: str,
    requests: int,
    warmup: int,
    *,
    params: dict[str, str] | None = None,
) -> tuple[list[float], int]:
    """``requests`` timed GETs after ``warmup`` untimed ones; (seconds each, non-200 count)."""
    for _ in range(warmup):
        http.get(path, params=params)
    samples = []
    bad = 0
    for _ in range(requests):
        t0 = time.perf_counter()
        response = http.get(path, params=params)
        samples.append(time.perf_counter() - t0)
        bad += response.status_code != 200
    return samples, bad


def latency_row(label: str, body_bytes: int, samples: Sequence[float]) -> tuple[str, ...]:
    s = latency_summary(samples)
    return (
        label,
        f"{body_bytes / 1024:.0f} KiB",
        str(len(samples)),
        ms(s["p50"]),
        ms(s["p90"]),
        ms(s["p99"]),
        ms(s["max"]),
    )


LATENCY_HEADER = ["request", "body", "n", "p50", "p90", "p99", "max"]


def wait_until(
    what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.2
) -> tuple[T, float]:
    """Poll ``probe`` until it returns something other than None/False; (value, seconds)."""
    t0 = time.monotonic()
    last_error = ""
    while True:
        try:
            value = probe()
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            value = None
            last_error = f" (last error: {exc!r})"
        if value is not None and value is not False:
            return value, time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"{what}: not reached within {timeout:.0f}s{last_error}")
        time.sleep(interval)


# --------------------------------------------------------------------- child processes


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


class Child:
    """A child process of this benchmark, started in its own session, stopped by its PID.

    ``sys.executable`` is the interpreter itself (not a shim), so the PID
    recorded here is the Python process that gets the signal.
    """

    def __init__(self, name: str, cmd: Sequence[str], log_path: Path, *, pipe_stdout: bool) -> None:
        self.name = name
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            list(cmd),
            cwd=REPO_ROOT,
            env=_child_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if pipe_stdout else self._log,
            stderr=self._log,
            start_new_session=True,
        )
        self.pid = self.proc.pid

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self, grace: float = 15.0) -> None:
        with signals_held():
            try:
                if self.proc.poll() is None:
                    os.kill(self.pid, signal.SIGTERM)
                    try:
                        self.proc.wait(timeout=grace)
                    except subprocess.TimeoutExpired:
                        os.kill(self.pid, signal.SIGKILL)
                        self.proc.wait(timeout=10)
            except ProcessLookupError:
                pass
            finally:
                if self.proc.stdout is not None:
                    with contextlib.suppress(OSError):
                        self.proc.stdout.close()
                with contextlib.suppress(OSError):
                    self._log.close()


class ApiServerProcess(Child):
    """``python -m lab.apiserver``: its URL is the first line it prints."""

    def __init__(
        self,
        log_dir: Path,
        *,
        seed: Sequence[dict[str, Any]] = (),
        bookmark_interval: float = 1.0,
        start_timeout: float = 20.0,
    ) -> None:
        cmd = [
            sys.executable,
            "-m",
            "lab.apiserver",
            "--port",
            "0",
            "--bookmark-interval",
            str(bookmark_interval),
        ]
        if seed:
            seed_path = log_dir / "apiserver-seed.json"
            seed_path.write_text(json.dumps(list(seed)))
            cmd += ["--seed", str(seed_path)]
        super().__init__("apiserver", cmd, log_dir / "apiserver.log", pipe_stdout=True)
        self.url = self._read_url(start_timeout)
        self.http = httpx.Client(base_url=self.url, timeout=10.0)

    def _read_url(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline().decode().strip() if ready else ""
        if not line.startswith("http://"):
            self.terminate()
            raise RuntimeError(f"the lab API server did not start:\n{self.log_tail()}")
        return line

    def create_pod(self, pod: dict[str, Any]) -> dict[str, Any]:
        namespace = pod["metadata"].get("namespace", "default")
        response = self.http.post(f"/api/v1/namespaces/{namespace}/pods", json=pod)
        response.raise_for_status()
        created: dict[str, Any] = response.json()
        return created

    def pods(self) -> list[dict[str, Any]]:
        response = self.http.get("/api/v1/pods")
        response.raise_for_status()
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    def terminate(self, grace: float = 15.0) -> None:
        http = getattr(self, "http", None)
        if http is not None:
            with contextlib.suppress(Exception):
                http.close()
        super().terminate(grace)


class KubeletProcess(Child):
    """``python -m lab.kubelet`` for one node; SIGTERM stops it and leaves the pods."""

    def __init__(
        self,
        log_dir: Path,
        *,
        api_url: str,
        cri_endpoint: str,
        node_name: str,
        root: Path,
        time_scale: float,
        sync_period: float = 1.0,
    ) -> None:
        root.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "lab.kubelet",
            "--api-server",
            api_url,
            "--cri-endpoint",
            cri_endpoint,
            "--node-name",
            node_name,
            "--root",
            str(root),
            "--time-scale",
            str(time_scale),
            "--sync-period",
            str(sync_period),
        ]
        super().__init__("kubelet", cmd, log_dir / "kubelet.log", pipe_stdout=False)


@contextlib.contextmanager
def children_stopped_on_exit() -> Iterator[list[Child]]:
    """A list to put started children in; each is stopped, newest first, on the way out."""
    started: list[Child] = []
    try:
        yield started
    finally:
        for child in reversed(started):
            child.terminate()


def remove_all_pods(endpoint: str, workers: int = 8, timeout: float = 60.0) -> list[str]:
    """Stop and remove every sandbox of the runtime, several at once; the IDs that failed.

    For pods a kubelet made (the lab's ``Lab`` drivers only remove their own):
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


def rss_mib(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / (1024 * 1024)
