"""The agent on containerd 1.6, containerd 2.x and CRI-O, side by side in one run.

Run as root from the repository root::

    python -m bench.bench_runtimes [--runtimes containerd,containerd2,crio] [--pods 20]

Each runtime is started privately in turn (``lab.runtimes``; containerd 2.x
and CRI-O from the upstream build cache, ``scripts/upstream/build.sh``), with
``--pods`` pods of two busybox containers made over CRI as kubelet makes
them. On each, measured in the same way:

* cold inventory: a fresh node state's first refresh to every sandbox and
  container with its PID (in this process, the agent's own code, ``--rounds``
  rounds, each from an empty snapshot on a new connection);
* warm list latency: ``GET /v1/containers`` against the agent subprocess;
* change-to-visible lag, events against relisting: two agent subprocesses
  watch the same runtime, one following container events (where the runtime
  broadcasts them), one relisting at the default 1 s
  (``PODLENS_FOLLOW_CONTAINER_EVENTS=false``); a container is started, then
  its process killed, ``--samples`` times; the lag is from the runtime's own
  started/finished timestamp to the first poll (every ~2 ms) in which each
  agent shows it running with its PID, or exited. Both agents have pidfd
  exit notifications, so exits are fast on both; starts show the change
  source;
* API-Running to PIDs shown: the lab's API server and kubelet (child
  processes) run ``--api-pods`` pods one at a time; from the first poll in
  which the API server shows a pod ``Running`` with both container IDs, to
  the first in which the agent (with ``--api-server``) shows both PIDs. A
  negative value is an agent that was ahead of the API server; the blind
  window is the positive part. Measured for the events agent and the
  relisting one (which has only the API server's news to go on);
* agent RSS after syncing and after the HTTP run.

Every timed answer is checked: lists hold every container, PIDs are the
runtime's. Exit status: 0 when every target is met, 1 when one is missed,
2 when a check failed or a runtime could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from agent.cri import CriClient
from agent.domain.model import ContainerState
from agent.services.node import NodeState
from agent.settings import Settings
from bench._harness import (
    LATENCY_HEADER,
    MIB,
    Outcome,
    format_table,
    latency_cells,
    log,
    machine,
    median,
    ms,
    percentile,
    ratio,
    run_benchmark,
    section,
    signals_held,
    stopped_on_exit,
    time_get,
    wait_until,
)
from bench._lab import LAB_ERRORS, AgentProcess, ApiServerProcess, KubeletProcess, remove_all_pods
from cri_proto import api_pb2
from lab.cri_pods import ContainerDef, CriPodDriver, PodHandle
from lab.images import BUSYBOX_IMAGE, build_images, default_cache_dir
from lab.runtimes import RUNTIMES, PrivateRuntime, private_runtime, runtime_problem

NAMESPACE = "bench"
SLEEP = ["sleep", "3600"]
TARGET_API_RUNNING_P50 = 0.100
POLL = 0.002


@dataclass
class RuntimeFigures:
    """What one runtime measured."""

    name: str
    version: str = ""
    change_source: str = ""
    cold: list[float] = field(default_factory=list)
    warm_list: list[float] = field(default_factory=list)
    start_events: list[float] = field(default_factory=list)
    start_relist: list[float] = field(default_factory=list)
    exit_events: list[float] = field(default_factory=list)
    exit_relist: list[float] = field(default_factory=list)
    api_events: list[float] = field(default_factory=list)
    api_relist: list[float] = field(default_factory=list)
    rss_synced: int = 0
    rss_after_http: int = 0
    events_received: int = 0


# --------------------------------------------------------------------- helpers


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """Set environment variables for the children started inside (this process's own env)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def get_json(http: httpx.Client, path: str) -> Any:
    """The JSON answer, or None when it is not a 200."""
    try:
        response = http.get(path)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


def first_seen(observers: dict[str, Callable[[], bool]], timeout: float) -> dict[str, float]:
    """Poll every observer until each is true; the wall-clock time each first was."""
    seen: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(seen) < len(observers):
        for name, probe in observers.items():
            if name not in seen and probe():
                seen[name] = time.time()
        if time.monotonic() > deadline:
            missing = sorted(set(observers) - set(seen))
            raise RuntimeError(f"not seen within {timeout:.0f}s by {missing}")
        time.sleep(POLL)
    return seen


def no_sandbox_of(agent: AgentProcess, pod: str) -> Callable[[], bool]:
    """Whether the agent lists no sandbox of ``pod`` any more."""

    def probe() -> bool:
        listed = get_json(agent.http, "/v1/sandboxes")
        return listed is not None and not any(s["pod"] == pod for s in listed["items"])

    return probe


def lists_with_pids(agent: AgentProcess, expected: set[str]) -> Callable[[], bool]:
    """Whether the agent lists every ``expected`` container with a PID."""

    def probe() -> bool:
        listed = get_json(agent.http, "/v1/containers")
        return listed is not None and {c["id"] for c in listed["items"] if c["pid"]} >= expected

    return probe


def create_pods(endpoint: str, base: Path, count: int, workers: int = 4) -> list[PodHandle]:
    """``count`` pods of two sleeping busybox containers, several threads at once."""
    containers = [
        ContainerDef("main", BUSYBOX_IMAGE, command=SLEEP),
        ContainerDef("sidecar", BUSYBOX_IMAGE, command=SLEEP),
    ]

    def make(worker: int) -> list[PodHandle]:
        with CriPodDriver(endpoint, base / "pods") as driver:
            return [
                driver.run_pod(f"inv-{i:03d}", NAMESPACE, containers=containers)
                for i in range(worker, count, workers)
            ]

    with ThreadPoolExecutor(workers, thread_name_prefix="pods") as pool:
        return [h for batch in pool.map(make, range(workers)) for h in batch]


# --------------------------------------------------------------------- the parts


def cold_inventory(endpoint: str, rounds: int, expected: set[str], outcome: Outcome) -> list[float]:
    """A fresh node state's first refresh, ``rounds`` times; every container with a PID."""

    async def once() -> float:
        settings = Settings(cri_endpoint=endpoint, node_name="bench")
        node = NodeState(settings)
        client = CriClient(endpoint, timeout=10.0)
        try:
            await client.version()
            t0 = time.perf_counter()
            await node.refresh_once(client)
            took = time.perf_counter() - t0
        finally:
            await client.close()
        snap = node.snapshot
        running = {c.id for c in snap.containers.values() if c.state is ContainerState.RUNNING}
        missing_pid = [
            c.id[:12] for c in snap.containers.values() if c.id in expected and not c.pid
        ]
        outcome.check(
            "cold inventory holds every container, each with its PID",
            expected <= running and not missing_pid,
            f"missing {sorted(expected - running)[:3]}, no PID {missing_pid[:3]}",
        )
        return took

    return [asyncio.run(once()) for _ in range(rounds)]


def change_lag(
    driver: CriPodDriver,
    agents: dict[str, AgentProcess],
    samples: int,
    figures: RuntimeFigures,
    outcome: Outcome,
) -> None:
    """Start a container, then kill its process, ``samples`` times; when each agent shows it."""
    pod = driver.run_pod(
        "lag", NAMESPACE, containers=[ContainerDef("c", BUSYBOX_IMAGE, command=SLEEP)]
    )
    current = pod.containers["c"]

    def shows(agent: AgentProcess, cid: str, state: str) -> Callable[[], bool]:
        def probe() -> bool:
            body = get_json(agent.http, f"/v1/containers/{cid}")
            if body is None or body["state"] != state:
                return False
            return bool(body["pid"]) if state == "running" else body["pid"] is None

        return probe

    for n in range(samples):
        if n:
            current = driver.restart_container(pod, "c")
        status = driver.container_status(current.id).status
        started = status.started_at / 1e9
        seen = first_seen({k: shows(a, current.id, "running") for k, a in agents.items()}, 30)
        figures.start_events.append(seen["events"] - started)
        figures.start_relist.append(seen["relist"] - started)
        pid = driver.container_pid(current.id)
        outcome.check("the started container has a PID in the runtime", pid is not None)
        if pid is None:
            continue
        for agent in agents.values():
            shown = get_json(agent.http, f"/v1/containers/{current.id}")
            outcome.check(
                f"{agent.name} shows the runtime's PID", shown is not None and shown["pid"] == pid
            )
        os.kill(pid, signal.SIGKILL)
        seen = first_seen({k: shows(a, current.id, "exited") for k, a in agents.items()}, 30)
        finished = (
            driver.wait_container_state(current.id, api_pb2.CONTAINER_EXITED).finished_at / 1e9
        )
        figures.exit_events.append(seen["events"] - finished)
        figures.exit_relist.append(seen["relist"] - finished)
        # A moment between samples, so the next start is not part of this exit's burst.
        time.sleep(0.05)
    driver.remove_pod(pod)


def api_running_to_pids(
    runtime: PrivateRuntime,
    base: Path,
    count: int,
    figures: RuntimeFigures,
    outcome: Outcome,
) -> None:
    """Pods through the lab's API server and kubelet, one at a time: API Running -> agent PIDs."""
    with stopped_on_exit() as children:
        api = ApiServerProcess(base, bookmark_interval=1.0)
        children.append(api)
        kubelet = KubeletProcess(
            base,
            api_url=api.url,
            cri_endpoint=runtime.endpoint,
            root=base / "kubelet",
            time_scale=1.0,
            sync_period=1.0,
        )
        children.append(kubelet)
        agents = {
            "events": AgentProcess(
                runtime.endpoint, base, extra_args=["--api-server", api.url], name="api-events"
            ),
        }
        with environment(PODLENS_FOLLOW_CONTAINER_EVENTS="false"):
            agents["relist"] = AgentProcess(
                runtime.endpoint, base, extra_args=["--api-server", api.url], name="api-relist"
            )
        children.extend(agents.values())
        for agent in agents.values():
            agent.wait_ready(60)

        def api_running(name: str) -> Callable[[], bool]:
            def probe() -> bool:
                pod = get_json(api.http, f"/api/v1/namespaces/{NAMESPACE}/pods/{name}")
                if pod is None or pod.get("status", {}).get("phase") != "Running":
                    return False
                statuses = pod["status"].get("containerStatuses") or []
                return len(statuses) == 2 and all(
                    s.get("containerID") and "running" in s.get("state", {}) for s in statuses
                )

            return probe

        def pids_shown(agent: AgentProcess, name: str) -> Callable[[], bool]:
            def probe() -> bool:
                view = get_json(agent.http, f"/v1/pods/{NAMESPACE}/{name}")
                return (
                    view is not None
                    and len(view["containers"]) == 2
                    and all(c["pid"] for c in view["containers"])
                )

            return probe

        for n in range(count):
            name = f"api-{n:02d}"
            api.create_pod(
                {
                    "metadata": {"name": name, "namespace": NAMESPACE},
                    "spec": {
                        "terminationGracePeriodSeconds": 0,
                        "containers": [
                            {"name": "app", "image": BUSYBOX_IMAGE, "command": SLEEP},
                            {"name": "side", "image": BUSYBOX_IMAGE, "command": SLEEP},
                        ],
                    },
                }
            )
            observers = {"api": api_running(name)}
            observers |= {k: pids_shown(a, name) for k, a in agents.items()}
            seen = first_seen(observers, 60)
            figures.api_events.append(seen["events"] - seen["api"])
            figures.api_relist.append(seen["relist"] - seen["api"])
            pod = get_json(api.http, f"/api/v1/namespaces/{NAMESPACE}/pods/{name}")
            api_ids = {
                s["containerID"].split("://", 1)[1] for s in pod["status"]["containerStatuses"]
            }
            for agent in agents.values():
                view = get_json(agent.http, f"/v1/pods/{NAMESPACE}/{name}")
                outcome.check(
                    f"{agent.name}: the pod's containers are the API server's",
                    view is not None and {c["id"] for c in view["containers"]} == api_ids,
                )
            api.http.delete(f"/api/v1/namespaces/{NAMESPACE}/pods/{name}")
            wait_until(
                f"{name} gone from the runtime", no_sandbox_of(agents["events"], name), 60, 0.05
            )
        log(f"{count} pods through the API server; kubelet PID {kubelet.pid}")


def measure(name: str, args: argparse.Namespace, outcome: Outcome) -> RuntimeFigures:
    """Everything, on one runtime."""
    figures = RuntimeFigures(name)
    base = Path(tempfile.mkdtemp(prefix="plr-", dir="/tmp"))
    cache = os.environ.get("PODLENS_IMAGE_CACHE")
    images = build_images(Path(cache) if cache else default_cache_dir())
    runtime = private_runtime(name, base / name, images)
    try:
        t0 = time.monotonic()
        runtime.start()
        log(f"{name}: started in {time.monotonic() - t0:.1f}s at {runtime.endpoint}")
        pods = create_pods(runtime.endpoint, base, args.pods)
        expected = {i for p in pods for i in p.container_ids.values()}
        log(f"{name}: {len(pods)} pods, {len(expected)} containers")
        figures.cold = cold_inventory(runtime.endpoint, args.rounds, expected, outcome)

        with stopped_on_exit() as children, CriPodDriver(runtime.endpoint, base / "pods") as driver:
            agents = {"events": AgentProcess(runtime.endpoint, base, name=f"{name}-events")}
            with environment(PODLENS_FOLLOW_CONTAINER_EVENTS="false"):
                agents["relist"] = AgentProcess(runtime.endpoint, base, name=f"{name}-relist")
            children.extend(agents.values())
            for agent in agents.values():
                agent.wait_ready(60)
                wait_until(
                    f"{agent.name} lists every container with its PID",
                    lists_with_pids(agent, expected),
                    60,
                    0.1,
                )
            time.sleep(1.0)
            node = get_json(agents["events"].http, "/v1/node")
            figures.version = node["runtime"]["version"]
            figures.change_source = node["capabilities"]["change_source"]
            if figures.change_source != "events":
                figures.change_source += f" ({node['capabilities']['change_source_reason']})"
            figures.rss_synced = agents["events"].rss_bytes()

            def whole_list(response: httpx.Response) -> str | None:
                listed = {c["id"] for c in response.json()["items"]}
                return None if expected <= listed else f"{len(expected - listed)} missing"

            timed = time_get(
                agents["events"].http, "/v1/containers", args.requests, 20, check=whole_list
            )
            outcome.check(
                f"{name}: every list answer complete", not timed.bad, "; ".join(timed.bad[:3])
            )
            figures.warm_list = timed.samples
            figures.rss_after_http = agents["events"].rss_bytes()

            log(f"{name}: change-to-visible lag, {args.samples} starts and exits")
            change_lag(driver, agents, args.samples, figures, outcome)
            figures.events_received = get_json(agents["events"].http, "/v1/node")["capabilities"][
                "events_received"
            ]
        log(f"{name}: API-Running to PIDs, {args.api_pods} pods")
        api_running_to_pids(runtime, base, args.api_pods, figures, outcome)
    finally:
        with signals_held():
            left = remove_all_pods(runtime.endpoint) if runtime.is_running() else []
            if left:
                log(f"{name}: pods not removed through CRI (stop() removes them): {left}")
            try:
                runtime.stop()
            finally:
                shutil.rmtree(base, ignore_errors=True)
    return figures


# --------------------------------------------------------------------- the report


def report(all_figures: list[RuntimeFigures], outcome: Outcome) -> None:
    """The tables, side by side, and the targets."""
    names = [f.name for f in all_figures]
    section("Side by side (p50 / p99)")

    def pair(values: list[float]) -> str:
        return f"{ms(percentile(values, 50))} / {ms(percentile(values, 99))}" if values else "-"

    rows: list[list[str]] = [
        ["runtime version", *(f.version for f in all_figures)],
        ["change source (events agent)", *(f.change_source for f in all_figures)],
        ["cold inventory (median of rounds)", *(ms(median(f.cold)) for f in all_figures)],
        ["warm GET /v1/containers", *(pair(f.warm_list) for f in all_figures)],
        ["start -> shown, events", *(pair(f.start_events) for f in all_figures)],
        ["start -> shown, relist 1 s", *(pair(f.start_relist) for f in all_figures)],
        ["exit -> shown, events + pidfd", *(pair(f.exit_events) for f in all_figures)],
        ["exit -> shown, relist 1 s + pidfd", *(pair(f.exit_relist) for f in all_figures)],
        ["API Running -> PIDs, events agent", *(pair(f.api_events) for f in all_figures)],
        ["API Running -> PIDs, relist agent", *(pair(f.api_relist) for f in all_figures)],
        [
            "agent RSS synced / after HTTP",
            *(f"{f.rss_synced / MIB:.0f} / {f.rss_after_http / MIB:.0f} MiB" for f in all_figures),
        ],
        ["events received (lag part)", *(str(f.events_received) for f in all_figures)],
    ]
    print(format_table(["", *names], rows))

    for f in all_figures:
        section(f"{f.name} {f.version}: distributions")
        print(
            format_table(
                ["", *LATENCY_HEADER],
                [
                    ("cold inventory", *latency_cells(f.cold)),
                    ("warm GET /v1/containers", *latency_cells(f.warm_list)),
                    ("start -> shown, events", *latency_cells(f.start_events)),
                    ("start -> shown, relist", *latency_cells(f.start_relist)),
                    ("exit -> shown, events", *latency_cells(f.exit_events)),
                    ("exit -> shown, relist", *latency_cells(f.exit_relist)),
                    ("API Running -> PIDs, events", *latency_cells(f.api_events)),
                    ("API Running -> PIDs, relist", *latency_cells(f.api_relist)),
                ],
            )
        )
        blind = [max(0.0, v) for v in f.api_events]
        print(
            f"\nstart lag, relist / events at p50: "
            f"{ratio(percentile(f.start_relist, 50), percentile(f.start_events, 50))}; "
            f"API ahead of the agent (events agent) in {sum(v > 0 for v in f.api_events)} of "
            f"{len(f.api_events)} pods, blind window p50 {ms(percentile(blind, 50))}"
        )

    for f in all_figures:
        for label, values in (("events agent", f.api_events), ("relist agent", f.api_relist)):
            p50 = percentile(values, 50)
            outcome.target(
                f"{f.name}: API Running -> PIDs p50, {label}",
                ms(p50),
                f"<= {TARGET_API_RUNNING_P50 * 1000:.0f} ms",
                p50 <= TARGET_API_RUNNING_P50,
            )
        outcome.info(
            f"{f.name}: start -> shown p50, events / relist",
            f"{ms(percentile(f.start_events, 50))} / {ms(percentile(f.start_relist, 50))}",
        )
        outcome.info(f"{f.name}: cold inventory median", ms(median(f.cold)))
        outcome.info(f"{f.name}: warm list p50", ms(percentile(f.warm_list, 50)))
        outcome.info(f"{f.name}: agent RSS synced", f"{f.rss_synced / MIB:.0f} MiB")


def run(args: argparse.Namespace) -> Outcome:
    """Each runtime in turn, then the tables."""
    outcome = Outcome()
    print(
        f"podlens runtimes benchmark: {', '.join(args.runtimes)}; {args.pods} pods of two "
        f"containers each, {args.samples} starts and exits, {args.api_pods} pods through the "
        f"lab's API server and kubelet; {machine()}"
    )
    figures = []
    for name in args.runtimes:
        figures.append(measure(name, args, outcome))
    report(figures, outcome)
    return outcome


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_runtimes", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--runtimes", default=",".join(RUNTIMES), help="comma-separated, in order")
    parser.add_argument("--pods", type=int, default=20, help="pods for the inventory")
    parser.add_argument("--rounds", type=int, default=5, help="cold inventory rounds")
    parser.add_argument("--requests", type=int, default=300, help="timed list requests")
    parser.add_argument("--samples", type=int, default=30, help="container starts and exits")
    parser.add_argument("--api-pods", type=int, default=15, help="pods through the API server")
    args = parser.parse_args(argv)
    args.runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]
    unknown = sorted(set(args.runtimes) - set(RUNTIMES))
    if unknown:
        parser.error(f"unknown runtime(s) {unknown}; known: {', '.join(RUNTIMES)}")
    problems = [f"{r}: {p}" for r in args.runtimes if (p := runtime_problem(r))]
    return run_benchmark(
        "bench_runtimes",
        lambda: run(args),
        cannot_run="; ".join(problems) or None,
        errors=LAB_ERRORS,
    )


if __name__ == "__main__":
    sys.exit(main())
