"""Load: many concurrent clients on the agent's read endpoints while pods churn.

The lab runs as separate processes, as on a node: a private containerd, the
fake API server (``python -m lab.apiserver``), the lab kubelet
(``python -m lab.kubelet``) and the agent (``python -m agent serve``).
A few steady pods run throughout; a churn thread creates a pod through the
API server every ``--churn-interval`` seconds and deletes the oldest once
more than ``--churn-keep`` exist, so the kubelet creates and removes
sandboxes and containers under the agent the whole time.

Meanwhile ``--clients`` asyncio clients (httpx, one keep-alive connection
each) send GETs back to back, each cycling through /v1/pods, /v1/containers,
/v1/sandboxes, /v1/node, one pod's detail and /v1/diagnostics, for
``--seconds``. Printed: requests served, p50/p99/max per endpoint, 5xx and
transport errors, the agent's RSS (idle, after the warm-up, in the middle,
at the end, and every few seconds), and a summary.

The same load runs on two agents one after the other, over the same lab
(``--mode both``, the default): first plain (HTTP, ``--auth-mode none``, the
agent's own work), then as the DaemonSet deploys it: TLS with a certificate,
every token reviewed by the API server (TokenReview for audience
``podlens``, then SubjectAccessReview; answers cached as in production).
There, every eighth client is an intruder that sends a token the agent must
refuse (one nobody owns, or a valid one minted for the API server's own
audience). A last table puts both side by side: requests per second,
latency, CPU per request and its ratio, peak RSS against the DaemonSet's
memory limit (read from ``daemonset/daemonset.yaml``).

Exit status: 0 when, for each agent, no answer was a 5xx, no request failed
at the transport level, the RSS at the end is within ``--rss-growth`` (20 %)
of the RSS after the warm-up, its peak stayed under the DaemonSet's memory
limit, no intruder got anything but a refusal and the agent still answers
``/healthz``; 1 otherwise; 2 when the lab could not run or no request was
served.

    python -m bench.bench_load [--mode both|plain|door] [--clients 32] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

from bench._harness import (
    MIB,
    Outcome,
    format_table,
    log,
    machine,
    percentile,
    run_benchmark,
    section,
    stopped_on_exit,
    wait_until,
)
from bench._lab import (
    LAB_ERRORS,
    AgentDoor,
    AgentProcess,
    ApiServerProcess,
    KubeletProcess,
    Lab,
    lab_problem,
    pods_removed_on_exit,
)

NS = "load"
# Kubelet's durations at a tenth, its relist twice a second: pods come and
# go faster than on a real node, so the agent sees more change per second.
KUBELET_TIME_SCALE = 0.1
KUBELET_SYNC_PERIOD = 0.5
BUSYBOX = "docker.io/library/busybox:latest"
DAEMONSET = Path(__file__).resolve().parent.parent / "daemonset" / "daemonset.yaml"
# The agent's two ways to serve, in the order they run and are compared.
MODES = {
    "plain": "plain (HTTP, --auth-mode none)",
    "door": "as deployed (TLS, tokens reviewed)",
}
READER = "system:serviceaccount:load:reader"
READER_TOKEN = "load-reader-" + "r" * 24
API_AUDIENCE_TOKEN = "load-apiserver-audience-" + "a" * 16
UNKNOWN_TOKEN = "load-nobody-" + "n" * 24
SLEEP = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]


def endpoints() -> list[tuple[str, str]]:
    """(label, path) of the read endpoints under load."""
    return [
        ("/v1/pods", "/v1/pods"),
        ("/v1/containers", "/v1/containers"),
        ("/v1/sandboxes", "/v1/sandboxes"),
        ("/v1/node", "/v1/node"),
        ("/v1/pods/{ns}/{name}", f"/v1/pods/{NS}/steady-0"),
        ("/v1/diagnostics", "/v1/diagnostics"),
    ]


def manifest(name: str, containers: int = 2) -> dict[str, Any]:
    """A pod of busybox containers that sleep and stop at once on SIGTERM."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": name.split("-")[0]}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {"name": f"c{i}", "image": BUSYBOX, "command": SLEEP} for i in range(containers)
            ],
        },
    }


# --------------------------------------------------------------------- churn


@dataclass
class Churn:
    """Pods created and deleted through the API server, one every ``interval`` s."""

    api_url: str
    interval: float
    keep: int
    prefix: str = "churn"
    live: list[str] = field(default_factory=list)
    created: int = 0
    deleted: int = 0
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        """Create a pod, delete the oldest beyond ``keep``; until ``stop`` is set."""
        with httpx.Client(base_url=self.api_url, timeout=10) as client:
            for n in itertools.count():
                if self.stop.wait(self.interval):
                    return
                name = f"{self.prefix}-{n:04d}"
                try:
                    r = client.post(f"/api/v1/namespaces/{NS}/pods", json=manifest(name, 1))
                    if r.status_code == 201:
                        self.created += 1
                        self.live.append(name)
                    else:
                        self.failures.append(f"create {name}: {r.status_code}")
                    while len(self.live) > self.keep:
                        old = self.live.pop(0)
                        r = client.delete(f"/api/v1/namespaces/{NS}/pods/{old}")
                        if r.status_code == 200:
                            self.deleted += 1
                        else:
                            self.failures.append(f"delete {old}: {r.status_code}")
                except httpx.HTTPError as exc:
                    self.failures.append(f"{name}: {exc!r}")

    def remove_all(self) -> None:
        """Delete the churned pods still there, so the next run starts from the steady ones."""
        with httpx.Client(base_url=self.api_url, timeout=10) as client:
            for name in self.live:
                with contextlib.suppress(httpx.HTTPError):
                    client.delete(f"/api/v1/namespaces/{NS}/pods/{name}")
        self.live.clear()


# --------------------------------------------------------------------- load


@dataclass
class Results:
    """What the clients saw over the measured window, per endpoint."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    errors: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    samples_5xx: list[str] = field(default_factory=list)
    # The agent's RSS every 5 s from the end of the warm-up, and its CPU
    # seconds (user + system) at the start and the end of the measured window.
    rss: list[tuple[float, int]] = field(default_factory=list)
    cpu_start: float = 0.0
    cpu_end: float = 0.0
    wall: float = 0.0


@dataclass
class Figures:
    """What is measured around the load."""

    single: dict[str, float]  # endpoint -> median seconds, one client, before the load
    rss_idle: int
    rss_end: int
    healthy: bool
    node: dict[str, Any]
    load_before: float
    load_after: float
    host_processes: int


async def client_loop(
    url: str,
    options: dict[str, Any],
    offset: int,
    until: float,
    record_from: float,
    results: Results,
) -> None:
    """One client: GETs back to back, cycling through the endpoints, until ``until``."""
    targets = endpoints()
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits, **options) as client:
        for n in itertools.count(offset):
            now = time.monotonic()
            if now >= until:
                return
            label, path = targets[n % len(targets)]
            t0 = time.perf_counter()
            try:
                response = await client.get(path)
            except httpx.HTTPError as exc:
                if time.monotonic() >= record_from:
                    results.errors[label][type(exc).__name__] += 1
                await asyncio.sleep(0.05)
                continue
            elapsed = time.perf_counter() - t0
            if time.monotonic() < record_from:
                continue  # warm-up
            results.latencies[label].append(elapsed)
            results.statuses[label][response.status_code] += 1
            if response.status_code >= 500 and len(results.samples_5xx) < 10:
                results.samples_5xx.append(f"{label}: {response.status_code} {response.text[:200]}")


async def sample_agent(
    agent: AgentProcess, start: float, until: float, every: float, results: Results
) -> None:
    """The agent's RSS from ``start`` (the end of the warm-up) every ``every`` seconds."""
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    results.cpu_start = agent.cpu_seconds()
    while time.monotonic() < until:
        results.rss.append((time.monotonic() - start, agent.rss_bytes()))
        await asyncio.sleep(every)


async def run_load(
    agent: AgentProcess, clients: int, seconds: float, warmup: float, intruders: Results | None
) -> Results:
    """All clients at once, warm-up then the measured window, with the agent sampled.

    With ``intruders`` (an agent behind its door), every eighth client sends a
    token the agent must refuse instead, alternately one the API server does
    not know and a valid one minted for the API server's audience, and what
    they got is recorded there.
    """
    results = Results()
    start = time.monotonic()
    record_from = start + warmup
    until = record_from + seconds
    tasks = []
    for i in range(clients):
        if intruders is not None and i % 8 == 7:
            token = UNKNOWN_TOKEN if (i // 8) % 2 == 0 else API_AUDIENCE_TOKEN
            options = agent.client_options(token)
            tasks.append(client_loop(agent.url, options, i, until, record_from, intruders))
        else:
            tasks.append(
                client_loop(agent.url, agent.client_options(), i, until, record_from, results)
            )
    await asyncio.gather(sample_agent(agent, record_from, until, 5.0, results), *tasks)
    results.cpu_end = agent.cpu_seconds()
    results.wall = time.monotonic() - record_from
    if intruders is not None:
        intruders.wall = results.wall
    return results


def single_client(agent: AgentProcess, rounds: int) -> dict[str, float]:
    """Median latency of each endpoint with one client and nothing else asked of the agent."""
    medians = {}
    for label, path in endpoints():
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            agent.http.get(path).raise_for_status()
            times.append(time.perf_counter() - t0)
        medians[label] = percentile(times, 50)
    return medians


# --------------------------------------------------------------------- the run


def running_pods(agent: AgentProcess) -> set[str] | None:
    """The steady pods the agent shows Running and joined with the API, or None for none."""
    response = agent.http.get("/v1/pods", params={"namespace": NS})
    if response.status_code != 200:
        raise RuntimeError(f"/v1/pods: {response.status_code} {response.text[:300]}")
    items = response.json()["items"]
    return {p["name"] for p in items if p["status"] == "Running" and p["api_known"]} or None


def memory_limit() -> int:
    """The agent container's memory limit in the DaemonSet, in bytes."""
    documents = yaml.safe_load_all(DAEMONSET.read_text())
    daemonset = next(d for d in documents if d and d.get("kind") == "DaemonSet")
    containers = daemonset["spec"]["template"]["spec"]["containers"]
    limit = str(
        next(c for c in containers if c["name"] == "agent")["resources"]["limits"]["memory"]
    )
    units = {"Ki": 1024, "Mi": MIB, "Gi": 1024 * MIB}
    return int(limit[:-2]) * units[limit[-2:]] if limit[-2:] in units else int(limit)


@dataclass
class ModeRun:
    """One agent's measured run: plain HTTP with no auth, or behind the DaemonSet's door."""

    mode: str
    results: Results
    churn: Churn
    figures: Figures
    intruders: Results | None


def measure(
    args: argparse.Namespace,
    lab: Lab,
    api: ApiServerProcess,
    children: list[Any],
    mode: str,
    door: AgentDoor | None,
) -> ModeRun:
    """Start an agent in ``mode``, load it with the pods churning, stop it."""
    section(f"Agent {MODES[mode]}")
    agent = AgentProcess(
        lab.endpoint,
        lab.base,
        extra_args=["--api-server", api.url],
        name=f"agent-{mode}",
        door=door,
    )
    children.append(agent)
    agent.wait_ready(60)
    wait_until(
        "steady pods running in the agent's view",
        lambda: (
            ({f"steady-{i}" for i in range(args.pods)} <= (running_pods(agent) or set())) or None
        ),
        120,
    )
    rss_idle = agent.rss_bytes()
    single = single_client(agent, args.single_rounds)
    load_before = os.getloadavg()[0]
    churn = Churn(api.url, args.churn_interval, args.churn_keep, prefix=f"churn-{mode}")
    churner = threading.Thread(target=churn.run, name="churn", daemon=True)
    churner.start()
    log(
        f"load: {args.clients} clients for {args.warmup:.0f}s warm-up + "
        f"{args.seconds:.0f}s, pods churning every {args.churn_interval:g}s"
    )
    intruders = Results() if door is not None else None
    try:
        results = asyncio.run(run_load(agent, args.clients, args.seconds, args.warmup, intruders))
    finally:
        churn.stop.set()
        churner.join(15)
        churn.remove_all()
    alive = agent.alive()
    figures = Figures(
        single=single,
        rss_idle=rss_idle,
        rss_end=agent.rss_bytes() if alive else 0,
        healthy=alive and agent.http.get("/healthz").status_code == 200,
        node=agent.http.get("/v1/node").json() if alive else {},
        load_before=load_before,
        load_after=os.getloadavg()[0],
        host_processes=len(psutil.pids()),
    )
    agent.terminate()
    children.remove(agent)
    return ModeRun(mode, results, churn, figures, intruders)


def run(args: argparse.Namespace) -> Outcome:
    """The lab up, the steady pods; the load with churn on each agent mode; then the report."""
    modes = list(MODES) if args.mode == "both" else [args.mode]
    print(
        f"podlens load benchmark: {args.clients} clients for {args.seconds:g} s, "
        f"{args.pods} steady pods, a pod churned every {args.churn_interval:g} s, agent "
        f"{' then '.join(MODES[m] for m in modes)}; real containerd; {machine()}"
    )
    runs: list[ModeRun] = []
    with (
        Lab(workers=1) as lab,
        pods_removed_on_exit(lab.endpoint),
        stopped_on_exit() as children,
    ):
        log(f"containerd up at {lab.endpoint}")
        # The lab API server answers the agent's reviews as a cluster would:
        # the reader's token is for audience podlens and may read the node's
        # pods and their logs (the podlens-viewer role and get pods/log); the
        # API-server token is valid but for another audience; the unknown one
        # is nobody's.
        api = ApiServerProcess(
            lab.base,
            bookmark_interval=1.0,
            tokens={
                READER_TOKEN: {"username": READER, "audiences": ["podlens"]},
                API_AUDIENCE_TOKEN: {"username": READER},
            },
            allow=[
                f"{READER},get,nodes,podlens,*",
                f"{READER},get,nodes,podlens-logs,*",
                f"{READER},get,pods,log,*",
            ],
        )
        children.append(api)
        kubelet = KubeletProcess(
            lab.base,
            api_url=api.url,
            cri_endpoint=lab.endpoint,
            root=lab.base / "kubelet",
            time_scale=KUBELET_TIME_SCALE,
            sync_period=KUBELET_SYNC_PERIOD,
        )
        children.append(kubelet)
        log(f"API server at {api.url}; lab kubelet started")
        for i in range(args.pods):
            api.create_pod(manifest(f"steady-{i}"))
        door = AgentDoor.make(lab.base, READER_TOKEN)
        for mode in modes:
            runs.append(measure(args, lab, api, children, mode, door if mode == "door" else None))
        log("tearing down (kubelet, API server, pods, containerd)")
    outcome = Outcome()
    limit = memory_limit()
    for mode_run in runs:
        report(args, mode_run, limit, outcome)
    if len(runs) > 1:
        compare(runs, limit, args.clients)
    return outcome


def mode_totals(results: Results) -> tuple[list[float], int, int, int]:
    """Every latency, and the 5xx, transport-error and other-status counts."""
    latencies = [x for lat in results.latencies.values() for x in lat]
    n5xx = other = 0
    for statuses in results.statuses.values():
        n5xx += sum(c for s, c in statuses.items() if s >= 500)
        other += sum(c for s, c in statuses.items() if s != 200 and s < 500)
    errors = sum(sum(kinds.values()) for kinds in results.errors.values())
    return latencies, n5xx, errors, other


def answered(mode_run: ModeRun) -> int:
    """Every request answered in the measured window, the intruders' refusals included."""
    readers = len(mode_totals(mode_run.results)[0])
    if mode_run.intruders is None:
        return readers
    return readers + sum(sum(s.values()) for s in mode_run.intruders.statuses.values())


def compare(runs: Sequence[ModeRun], limit: int, clients: int) -> None:
    """The modes side by side: what TLS and a reviewed token cost the same load.

    Latencies and requests per second are the readers'; CPU per request
    counts every answer, the intruders' refusals included.
    """
    section("Side by side: the same load on each agent")
    rows = []
    base_cpu = 0.0
    for mode_run in runs:
        latencies, n5xx, errors, _other = mode_totals(mode_run.results)
        wall = mode_run.results.wall
        cpu = (mode_run.results.cpu_end - mode_run.results.cpu_start) / max(answered(mode_run), 1)
        base_cpu = base_cpu or cpu
        peak = max([rss for _, rss in mode_run.results.rss] + [mode_run.figures.rss_end])
        intruders = clients // 8 if mode_run.intruders is not None else 0
        rows.append(
            [
                MODES[mode_run.mode],
                f"{clients - intruders}" + (f" + {intruders} intruders" if intruders else ""),
                f"{len(latencies) / wall:.0f}",
                f"{percentile(latencies, 50) * 1000:.1f}" if latencies else "-",
                f"{percentile(latencies, 99) * 1000:.1f}" if latencies else "-",
                f"{cpu * 1000:.2f}",
                f"{cpu / base_cpu:.2f}x" if base_cpu else "-",
                f"{peak / MIB:.0f} of {limit / MIB:.0f}",
                n5xx,
                errors,
            ]
        )
    print(
        format_table(
            ["agent", "clients", "reader req/s", "p50 ms", "p99 ms", "CPU ms/answer",
             "CPU ratio", "peak RSS MiB", "5xx", "errors"],
            rows,
        )
    )  # fmt: skip


def report(args: argparse.Namespace, mode_run: ModeRun, limit: int, outcome: Outcome) -> None:
    """One mode's tables, and its targets: no 5xx or transport errors, memory flat and
    under the DaemonSet's limit, still healthy; behind the door, no intruder let in."""
    results, churn, figures = mode_run.results, mode_run.churn, mode_run.figures
    name = MODES[mode_run.mode]
    wall = results.wall
    series = results.rss
    rss_idle, rss_end, healthy = figures.rss_idle, figures.rss_end, figures.healthy
    rows = []
    total = total_5xx = total_errors = total_other = 0
    for label, _ in endpoints():
        lat = results.latencies.get(label, [])
        statuses = results.statuses.get(label, Counter())
        errors = sum(results.errors.get(label, Counter()).values())
        n5xx = sum(c for s, c in statuses.items() if s >= 500)
        other = sum(c for s, c in statuses.items() if s != 200 and s < 500)
        total += len(lat)
        total_5xx += n5xx
        total_errors += errors
        total_other += other
        rows.append(
            [
                label,
                len(lat),
                f"{len(lat) / wall:.1f}",
                f"{percentile(lat, 50) * 1000:.1f}" if lat else "-",
                f"{percentile(lat, 99) * 1000:.1f}" if lat else "-",
                f"{max(lat) * 1000:.1f}" if lat else "-",
                f"{figures.single[label] * 1000:.1f}",
                n5xx,
                other,
                errors,
            ]
        )
    section(f"Load on the read endpoints, agent {name} ({args.clients} clients, {wall:.0f} s)")
    print(
        format_table(
            [
                "endpoint",
                "requests",
                "req/s",
                "p50 ms",
                "p99 ms",
                "max ms",
                "1 client ms",
                "5xx",
                "other",
                "errors",
            ],
            rows,
        )
    )
    for label, kinds in results.errors.items():
        print(f"  transport errors on {label}: {dict(kinds)}")
    for sample in results.samples_5xx:
        print(f"  5xx: {sample}")

    # The RSS after the warm-up is the baseline: the first seconds of load start
    # the worker threads and fill the allocator's arenas, which is not growth.
    after_warmup = series[0][1] if series else rss_idle
    middle = series[len(series) // 2][1] if series else rss_idle
    peak = max([rss for _, rss in series] + [rss_end])
    growth = (rss_end - after_warmup) / after_warmup if after_warmup else 0.0
    section(f"Agent memory (RSS), agent {name}")
    print(
        format_table(
            ["when", "MiB"],
            [
                ["idle, before the load", f"{rss_idle / MIB:.1f}"],
                ["after the warm-up (baseline)", f"{after_warmup / MIB:.1f}"],
                ["middle", f"{middle / MIB:.1f}"],
                ["end", f"{rss_end / MIB:.1f}"],
                ["peak (of the samples)", f"{peak / MIB:.1f}"],
                ["the DaemonSet's limit", f"{limit / MIB:.0f}"],
            ],
        )
    )
    print("  every 5 s: " + " ".join(f"{rss / MIB:.0f}" for _, rss in series))

    counts = figures.node.get("counts", {})
    cpu = results.cpu_end - results.cpu_start
    rows = [
        ["pods churned", f"{churn.created} created, {churn.deleted} deleted"],
        ["churn failures", len(churn.failures)],
        ["agent CPU", f"{cpu:.1f}s in {wall:.0f}s ({cpu / wall * 100:.0f}% of a core), "
                      f"{cpu / max(total, 1) * 1000:.1f} ms per request"],
        ["load average", f"{figures.load_before:.1f} before, {figures.load_after:.1f} "
                         f"after ({os.cpu_count()} CPUs, {figures.host_processes} host "
                         "processes)"],
        ["objects at the end", f"{counts.get('sandboxes')} sandboxes, "
                               f"{counts.get('containers')} containers"],
    ]  # fmt: skip
    intruders = mode_run.intruders
    let_in = intruder_5xx = 0
    if intruders is not None:
        seen: Counter[int] = Counter()
        for statuses in intruders.statuses.values():
            seen.update(statuses)
        let_in = sum(c for s, c in seen.items() if s < 400)
        intruder_5xx = sum(c for s, c in seen.items() if s >= 500)
        rows.append(["intruders' answers", ", ".join(f"{c}x {s}" for s, c in sorted(seen.items()))])
    section(f"Around the load, agent {name}")
    print(format_table(["what", "measured"], rows))
    for failure in churn.failures[:5]:
        print(f"  churn: {failure}")

    where = f" ({name})"
    outcome.check("requests were served" + where, total > 0, "none")
    outcome.info(
        "requests served" + where,
        f"{total} in {wall:.0f}s ({total / wall:.0f}/s, {args.clients} clients)",
    )
    outcome.target("5xx answers" + where, str(total_5xx), "0", total_5xx == 0)
    outcome.target("transport errors" + where, str(total_errors), "0", total_errors == 0)
    outcome.info("other answers (not 200, below 500)" + where, str(total_other))
    outcome.target(
        "RSS growth after warm-up" + where,
        f"{growth * 100:+.1f}%",
        f"<= {args.rss_growth * 100:.0f}%",
        growth <= args.rss_growth,
    )
    outcome.target(
        "peak RSS" + where, f"{peak / MIB:.0f} MiB", f"< {limit / MIB:.0f} MiB", peak < limit
    )
    if intruders is not None:
        outcome.target("intruders let in" + where, str(let_in), "0", let_in == 0)
        outcome.target("5xx to intruders" + where, str(intruder_5xx), "0", intruder_5xx == 0)
    outcome.target(
        "agent answers /healthz at the end" + where, "yes" if healthy else "no", "yes", healthy
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_load", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--mode",
        choices=["both", *MODES],
        default="both",
        help="the agent behind the DaemonSet's door (TLS, reviewed tokens), plain, or both",
    )
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured load duration")
    parser.add_argument("--warmup", type=float, default=5.0, help="unmeasured load first")
    parser.add_argument("--pods", type=int, default=6, help="steady pods (2 containers each)")
    parser.add_argument(
        "--churn-interval", type=float, default=1.0, help="seconds between pod creations"
    )
    parser.add_argument("--churn-keep", type=int, default=5, help="churned pods kept at once")
    parser.add_argument(
        "--rss-growth", type=float, default=0.20, help="allowed RSS growth (fraction)"
    )
    parser.add_argument(
        "--single-rounds", type=int, default=20, help="one-client requests per endpoint first"
    )
    args = parser.parse_args(argv)
    if args.clients < 1 or args.seconds <= 0:
        parser.error("--clients and --seconds must be positive")
    return run_benchmark(
        "bench_load", lambda: run(args), cannot_run=lab_problem(), errors=LAB_ERRORS
    )


if __name__ == "__main__":
    sys.exit(main())
