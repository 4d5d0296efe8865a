"""Inventory benchmark against a real containerd with N pods (default 110 x 2 containers).

Run as root from the repository root::

    python -m bench.bench_inventory [--pods 110]

Measures, in one run and side by side:

1. cold start to a complete inventory with every PID: the agent's
   ``NodeState.refresh_once`` (two lists, then verbose status calls in
   parallel) against the naive way (the same calls one after another), and
   checks that both found the same IDs and PIDs, and that the PIDs are the
   right processes in /proc;
2. warm ``GET /v1/containers`` and ``GET /v1/sandboxes`` (JSON and text)
   latency against the agent subprocess over real HTTP;
3. the agent's RSS with no pods and after syncing all of them;
4. the agent's CPU while nothing changes.

Exit status: 0 when every target is met, 1 when a target is missed, 2 when a
check failed (wrong inventory) or the lab could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import json
import os
import pstats
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import grpc.aio
import httpx
import psutil

from agent.cri import CriClient, _convert
from agent.domain.model import Container
from agent.services.node import NodeState
from agent.settings import Settings
from bench._lab import (
    MIB,
    AgentProcess,
    Lab,
    Terminated,
    agents_stopped_on_exit,
    format_table,
    lab_problem,
    latency_summary,
    log,
    median,
    ms,
    raise_on_sigterm,
)
from cri_proto import api_pb2, api_pb2_grpc
from lab.cri_pods import PodHandle

TARGET_RATIO = 3.0
TARGET_P50_SECONDS = 0.010
TARGET_RSS_BYTES = 100 * MIB
TARGET_IDLE_CPU_PERCENT = 1.0
SWEEP_CONCURRENCY = (1, 4, 8, 16, 32, 64)
HTTP_PATHS = (
    "/v1/containers",
    "/v1/sandboxes",
    "/v1/containers?output=text",
    "/v1/sandboxes?output=text",
)


# --------------------------------------------------------------------- results


@dataclass
class Outcome:
    """Targets and checks, collected as the run goes."""

    summary: list[tuple[str, str, str, str]] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)
    failed_checks: list[str] = field(default_factory=list)

    def target(self, metric: str, measured: str, target: str, ok: bool) -> None:
        self.summary.append((metric, measured, target, "ok" if ok else "MISSED"))
        if not ok:
            self.missed.append(f"{metric}: {measured} (target {target})")

    def check(self, what: str, ok: bool, detail: str = "") -> None:
        if not ok:
            self.failed_checks.append(f"{what}: {detail}" if detail else what)


@dataclass(frozen=True)
class Inventory:
    """What a cold start found: sandbox ID -> pause PID, container ID -> PID."""

    sandboxes: dict[str, int | None]
    containers: dict[str, int | None]

    def describe_difference(self, other: Inventory) -> str:
        parts = []
        for kind, mine, theirs in (
            ("sandboxes", self.sandboxes, other.sandboxes),
            ("containers", self.containers, other.containers),
        ):
            only_mine = mine.keys() - theirs.keys()
            only_theirs = theirs.keys() - mine.keys()
            pid_diff = {k for k in mine.keys() & theirs.keys() if mine[k] != theirs[k]}
            if only_mine or only_theirs or pid_diff:
                parts.append(
                    f"{kind}: {len(only_mine)} only in first, {len(only_theirs)} only in "
                    f"second, {len(pid_diff)} with different PIDs"
                )
        return "; ".join(parts) or "equal"


def section(title: str) -> None:
    print()
    print(title)
    print("=" * len(title))


# --------------------------------------------------------------------- 1. cold start


@dataclass(frozen=True)
class ColdRun:
    way: str
    seconds: float
    cpu_seconds: float  # this process, all threads (event loop + grpc)
    containerd_cpu_seconds: float
    status_calls: int
    inventory: Inventory


async def _fresh_client(endpoint: str, settings: Settings) -> CriClient:
    client = CriClient(endpoint, timeout=settings.cri_timeout_seconds)
    # As the agent does before its first refresh: connects the channel and
    # tells the client which runtime's verbose format to read.
    await client.version()
    return client


class _Meter:
    def __init__(self, containerd: psutil.Process) -> None:
        self.containerd = containerd

    def __enter__(self) -> _Meter:
        self.t0 = time.perf_counter()
        self.cpu0 = time.process_time()
        c = self.containerd.cpu_times()
        self.ctr0 = c.user + c.system
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0
        self.cpu = time.process_time() - self.cpu0
        c = self.containerd.cpu_times()
        self.ctr = c.user + c.system - self.ctr0


async def agent_way(client: CriClient, settings: Settings, containerd: psutil.Process) -> ColdRun:
    node = NodeState(settings)
    with _Meter(containerd) as m:
        await node.refresh_once(client)
    snap = node.snapshot
    inventory = Inventory(
        {s.id: s.pause_pid for s in snap.sandboxes.values()},
        {c.id: c.pid for c in snap.containers.values()},
    )
    label = f"agent(c={settings.status_concurrency})"
    return ColdRun(label, m.seconds, m.cpu, m.ctr, node.status_calls, inventory)


async def naive_way(client: CriClient, containerd: psutil.Process) -> ColdRun:
    sandboxes: dict[str, int | None] = {}
    containers: dict[str, int | None] = {}
    calls = 0
    with _Meter(containerd) as m:
        listed_sandboxes = await client.list_sandboxes()
        listed_containers = await client.list_containers()
        for sb in listed_sandboxes:
            full = await client.sandbox_status(sb.id)
            sandboxes[full.id] = full.pause_pid
            calls += 1
        for c in listed_containers:
            merged, _ = await client.container_status(c)
            containers[merged.id] = merged.pid
            calls += 1
    return ColdRun("naive", m.seconds, m.cpu, m.ctr, calls, Inventory(sandboxes, containers))


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def verify_inventory(
    inventory: Inventory, expected_sandboxes: set[str], expected_containers: set[str]
) -> list[str]:
    """The inventory against what the pods are: IDs as created, PIDs live and the right programs."""
    problems = []
    if set(inventory.sandboxes) != expected_sandboxes:
        problems.append(
            f"sandbox IDs differ from the pods created ({len(inventory.sandboxes)} found, "
            f"{len(expected_sandboxes)} expected)"
        )
    if set(inventory.containers) != expected_containers:
        problems.append(
            f"container IDs differ from the containers created ({len(inventory.containers)} "
            f"found, {len(expected_containers)} expected)"
        )
    no_pid = [k for k, v in (*inventory.sandboxes.items(), *inventory.containers.items()) if not v]
    if no_pid:
        problems.append(f"{len(no_pid)} objects without a PID, e.g. {no_pid[0][:13]}")
    wrong = []
    for sid, pid in inventory.sandboxes.items():
        if pid and _cmdline(pid)[:1] != ["/pause"]:
            wrong.append(f"sandbox {sid[:13]} pid {pid}: {_cmdline(pid)}")
    for cid, pid in inventory.containers.items():
        if pid and _cmdline(pid) != ["sleep", "3600"]:
            wrong.append(f"container {cid[:13]} pid {pid}: {_cmdline(pid)}")
    if wrong:
        problems.append(f"{len(wrong)} PIDs are not the expected process, e.g. {wrong[0]}")
    pids = [p for p in inventory.containers.values() if p]
    if len(set(pids)) != len(pids):
        problems.append("two containers reported with the same PID")
    return problems


async def runtime_floor(
    endpoint: str, containerd: psutil.Process, rounds: int = 3, concurrency: int = 32
) -> list[tuple[str, float, float, float]]:
    """The status calls alone, through bare stubs with no conversion to the agent's types.

    Sequential and concurrent, verbose and not: what any client would pay
    here, and how much of it is containerd's own CPU. Medians of ``rounds``.
    """
    channel = grpc.aio.insecure_channel(
        endpoint, options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    )
    rows = []
    try:
        stub = api_pb2_grpc.RuntimeServiceStub(channel)
        sandbox_ids = [
            s.id for s in (await stub.ListPodSandbox(api_pb2.ListPodSandboxRequest())).items
        ]
        container_ids = [
            c.id for c in (await stub.ListContainers(api_pb2.ListContainersRequest())).containers
        ]

        def calls(verbose: bool) -> list[Callable[[], Awaitable[object]]]:
            made: list[Callable[[], Awaitable[object]]] = []
            for sid in sandbox_ids:
                req_s = api_pb2.PodSandboxStatusRequest(pod_sandbox_id=sid, verbose=verbose)
                made.append(functools.partial(stub.PodSandboxStatus, req_s, timeout=5))
            for cid in container_ids:
                req_c = api_pb2.ContainerStatusRequest(container_id=cid, verbose=verbose)
                made.append(functools.partial(stub.ContainerStatus, req_c, timeout=5))
            return made

        async def sequential(jobs: list[Callable[[], Awaitable[object]]]) -> None:
            for job in jobs:
                await job()

        async def concurrent(jobs: list[Callable[[], Awaitable[object]]]) -> None:
            limit = asyncio.Semaphore(concurrency)

            async def one(job: Callable[[], Awaitable[object]]) -> None:
                async with limit:
                    await job()

            await asyncio.gather(*(one(j) for j in jobs))

        for verbose in (True, False):
            for label, runner in (
                ("one by one", sequential),
                (f"{concurrency} at once", concurrent),
            ):
                walls, cpus, ctrs = [], [], []
                for _ in range(rounds):
                    jobs = calls(verbose)
                    with _Meter(containerd) as m:
                        await runner(jobs)
                    walls.append(m.seconds)
                    cpus.append(m.cpu)
                    ctrs.append(m.ctr)
                kind = "verbose" if verbose else "plain"
                name = f"{kind} status x{len(sandbox_ids) + len(container_ids)}, {label}"
                rows.append((name, median(walls), median(cpus), median(ctrs)))
    finally:
        await channel.close()
    return rows


async def conversion_cost(
    endpoint: str, kind_client: CriClient, rounds: int = 5
) -> dict[str, float]:
    """Python-side cost of one full inventory's verbose statuses, with no I/O in the way.

    Fetches every verbose status once, then times (best of ``rounds``) what
    the process does with them: protobuf parsing, ``json.loads`` of the
    verbose info, and the whole conversion into the agent's types.
    """
    channel = grpc.aio.insecure_channel(
        endpoint, options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    )
    try:
        stub = api_pb2_grpc.RuntimeServiceStub(channel)
        listed_containers = await kind_client.list_containers()
        listed_sandboxes = await kind_client.list_sandboxes()
        sb_responses = [
            await stub.PodSandboxStatus(
                api_pb2.PodSandboxStatusRequest(pod_sandbox_id=s.id, verbose=True), timeout=5
            )
            for s in listed_sandboxes
        ]
        c_responses = [
            await stub.ContainerStatus(
                api_pb2.ContainerStatusRequest(container_id=c.id, verbose=True), timeout=5
            )
            for c in listed_containers
        ]
    finally:
        await channel.close()
    kind = kind_client.kind
    wire = [(type(r), r.SerializeToString()) for r in (*sb_responses, *c_responses)]
    infos = [r.info.get("info", "") for r in (*sb_responses, *c_responses)]
    pairs: list[tuple[object, Container]] = list(zip(c_responses, listed_containers, strict=True))

    def best(fn: Callable[[], object]) -> float:
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    def parse_protobuf() -> None:
        for cls, data in wire:
            cls.FromString(data)

    def parse_json() -> None:
        for text in infos:
            json.loads(text)

    def convert() -> None:
        for r in sb_responses:
            _convert.sandbox_from_status(r, kind)
        for r, listed in pairs:
            _convert.container_from_status(r, kind, listed)

    return {
        "responses": float(len(wire)),
        "bytes_per_response": sum(len(d) for _, d in wire) / max(len(wire), 1),
        "protobuf_parse": best(parse_protobuf),
        "json_loads": best(parse_json),
        "convert_total": best(convert),
    }


async def profile_agent_way(endpoint: str, settings: Settings, top: int = 12) -> str:
    client = await _fresh_client(endpoint, settings)
    try:
        node = NodeState(settings)
        profiler = cProfile.Profile()
        t0 = time.perf_counter()
        profiler.enable()
        await node.refresh_once(client)
        profiler.disable()
        wall = time.perf_counter() - t0
    finally:
        await client.close()
    stats = pstats.Stats(profiler)
    raw = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values())  # tottime over every function

    def cum_of(name_part: str) -> float:
        found = [v[3] for (filename, _line, func), v in raw.items() if name_part == func]
        return max(found, default=0.0)

    rows = []
    for (filename, line, func), (_cc, nc, tt, ct, _callers) in sorted(
        raw.items(), key=lambda kv: kv[1][2], reverse=True
    )[:top]:
        where = f"{Path(filename).name}:{line}" if line else filename
        rows.append((func, where, nc, ms(tt), f"{tt / wall * 100:.0f}%", ms(ct)))
    lines = [
        f"one agent-way refresh under cProfile: {ms(wall)} wall "
        f"({ms(total)} of Python function time recorded)",
        "cumulative: "
        + ", ".join(
            f"{name} {ms(cum_of(name))} ({cum_of(name) / wall * 100:.0f}%)"
            for name in (
                "sandbox_from_status",
                "container_from_status",
                "parse_sandbox_info",
                "parse_container_info",
                "loads",
            )
        ),
        "",
        format_table(["function (by own time)", "where", "calls", "own", "of wall", "cum"], rows),
        "(cProfile counts each resumption of a coroutine as a call)",
    ]
    return "\n".join(lines)


async def bench_cold(
    endpoint: str,
    containerd_pid: int,
    expected_sandboxes: set[str],
    expected_containers: set[str],
    reps: int,
    outcome: Outcome,
) -> None:
    containerd = psutil.Process(containerd_pid)
    settings = Settings(cri_endpoint=endpoint, node_name="bench")
    section(
        f"1. Cold start to a complete inventory ({len(expected_sandboxes)} sandboxes, "
        f"{len(expected_containers)} containers, every PID)"
    )
    print(
        f"agent way: fresh CriClient + NodeState, refresh_once on an empty snapshot "
        f"(status_concurrency={settings.status_concurrency}); naive way: the same client, "
        "the lists then every verbose status one after another. "
        f"{reps} rounds, alternating which goes first."
    )

    runs: dict[str, list[ColdRun]] = {"agent": [], "naive": []}
    reference: Inventory | None = None
    for rep in range(reps):
        client = await _fresh_client(endpoint, settings)
        try:
            order = ("agent", "naive") if rep % 2 == 0 else ("naive", "agent")
            for way in order:
                if way == "agent":
                    run = await agent_way(client, settings, containerd)
                else:
                    run = await naive_way(client, containerd)
                runs[way].append(run)
                if reference is None:
                    reference = run.inventory
                elif run.inventory != reference:
                    outcome.check(
                        f"round {rep + 1}: {run.way} inventory differs from the first",
                        False,
                        reference.describe_difference(run.inventory),
                    )
        finally:
            await client.close()
    assert reference is not None
    for problem in verify_inventory(reference, expected_sandboxes, expected_containers):
        outcome.check("inventory vs the pods created and /proc", False, problem)
    same = all(r.inventory == reference for rs in runs.values() for r in rs)

    agent_times = [r.seconds for r in runs["agent"]]
    naive_times = [r.seconds for r in runs["naive"]]
    rows = []
    for way, rs in runs.items():
        times = [r.seconds for r in rs]
        rows.append(
            (
                way,
                ms(median(times)),
                ms(min(times)),
                ms(max(times)),
                ms(median([r.cpu_seconds for r in rs])),
                ms(median([r.containerd_cpu_seconds for r in rs])),
                rs[0].status_calls,
                "  ".join(f"{t * 1000:.0f}" for t in times),
            )
        )
    print()
    print(
        format_table(
            [
                "way",
                "median",
                "min",
                "max",
                "bench CPU (med)",
                "containerd CPU (med)",
                "status calls",
                "each round (ms)",
            ],
            rows,
        )
    )
    ratio_median = median(naive_times) / median(agent_times)
    ratio_min = min(naive_times) / min(agent_times)
    print()
    print(
        f"ratio naive/agent: {ratio_median:.2f}x on medians, {ratio_min:.2f}x on minimums "
        f"(target >= {TARGET_RATIO:.0f}x)"
    )
    counted = len(reference.sandboxes) + len(reference.containers)
    print(
        f"results: {'identical' if same else 'DIFFERENT'} across all {2 * reps} runs: "
        f"{len(reference.sandboxes)} sandboxes + {len(reference.containers)} containers = "
        f"{counted} IDs, each with a PID that /proc shows as /pause or 'sleep 3600'"
        if same and not outcome.failed_checks
        else f"results: CHECK FAILED: {outcome.failed_checks}"
    )
    outcome.target(
        "cold inventory naive/agent (median)",
        f"{ratio_median:.2f}x ({ms(median(naive_times))} / {ms(median(agent_times))})",
        f">= {TARGET_RATIO:.0f}x",
        ratio_median >= TARGET_RATIO,
    )

    # Where the time goes, and whether the concurrency limit matters.
    section("1b. status_concurrency sweep (agent way; naive measured in the same rounds)")
    sweep: dict[str, list[float]] = {"naive": []}
    sweep_cpu: dict[str, list[float]] = {}
    for _round in range(reps):
        client = await _fresh_client(endpoint, settings)
        try:
            naive = await naive_way(client, containerd)
            sweep["naive"].append(naive.seconds)
            for conc in SWEEP_CONCURRENCY:
                s = settings.model_copy(update={"status_concurrency": conc})
                run = await agent_way(client, s, containerd)
                sweep.setdefault(str(conc), []).append(run.seconds)
                sweep_cpu.setdefault(str(conc), []).append(run.cpu_seconds)
                if run.inventory != reference:
                    outcome.check(
                        f"sweep c={conc} inventory differs",
                        False,
                        reference.describe_difference(run.inventory),
                    )
        finally:
            await client.close()
    naive_med = median(sweep["naive"])
    sweep_rows = [("naive (sequential)", ms(naive_med), ms(min(sweep["naive"])), "1.00x", "")]
    best_conc, best_med = "", float("inf")
    for conc in SWEEP_CONCURRENCY:
        times = sweep[str(conc)]
        med = median(times)
        if med < best_med:
            best_conc, best_med = str(conc), med
        sweep_rows.append(
            (
                f"agent c={conc}",
                ms(med),
                ms(min(times)),
                f"{naive_med / med:.2f}x",
                ms(median(sweep_cpu[str(conc)])),
            )
        )
    print(format_table(["way", "median", "min", "naive/this", "bench CPU (med)"], sweep_rows))
    print(f"fastest: status_concurrency={best_conc} ({ms(best_med)} median)")

    section("1c. Where the agent way spends its time (Python side)")
    client = await _fresh_client(endpoint, settings)
    try:
        cost = await conversion_cost(endpoint, client)
    finally:
        await client.close()
    agent_med = median(agent_times)
    print(
        f"{int(cost['responses'])} verbose status responses, "
        f"{cost['bytes_per_response'] / 1024:.1f} KiB each on average"
    )
    print(
        format_table(
            ["step (all responses, no I/O, best of 5)", "time", "of agent-way median"],
            [
                (
                    "protobuf parse",
                    ms(cost["protobuf_parse"]),
                    f"{cost['protobuf_parse'] / agent_med * 100:.0f}%",
                ),
                (
                    "json.loads of info['info']",
                    ms(cost["json_loads"]),
                    f"{cost['json_loads'] / agent_med * 100:.0f}%",
                ),
                (
                    "whole conversion (_convert.*_from_status)",
                    ms(cost["convert_total"]),
                    f"{cost['convert_total'] / agent_med * 100:.0f}%",
                ),
            ],
        )
    )
    print()
    print(await profile_agent_way(endpoint, settings))

    section("1d. The status calls alone (bare gRPC stubs, nothing converted)")
    floor = await runtime_floor(endpoint, containerd)
    print(
        format_table(
            ["calls", "wall (med of 3)", "bench CPU", "containerd CPU"],
            [(name, ms(w), ms(c), ms(k)) for name, w, c, k in floor],
        )
    )
    print(
        "CPU times are in clock ticks (10 ms); with 2 CPUs the wall time of any client "
        "is bounded below by (bench CPU + containerd CPU) / 2."
    )


async def warm_relist_cost(endpoint: str, rounds: int = 30, top: int = 10) -> str:
    """What one relist costs in-process when nothing changed, and where it goes."""
    settings = Settings(cri_endpoint=endpoint, node_name="bench")
    client = await _fresh_client(endpoint, settings)
    try:
        node = NodeState(settings)
        await node.refresh_once(client)
        calls_before = node.status_calls
        walls, cpus = [], []
        for _ in range(rounds):
            t0, c0 = time.perf_counter(), time.process_time()
            await node.refresh_once(client)
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(rounds):
            await node.refresh_once(client)
        profiler.disable()
        status_calls = node.status_calls - calls_before
    finally:
        await client.close()
    raw = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    rows = [
        (
            func,
            f"{Path(filename).name}:{line}" if line else filename,
            nc // rounds,
            ms(tt / rounds),
            ms(ct / rounds),
        )
        for (filename, line, func), (_cc, nc, tt, ct, _callers) in sorted(
            raw.items(), key=lambda kv: kv[1][2], reverse=True
        )[:top]
    ]
    return "\n".join(
        [
            f"one relist with nothing changed, in-process (agent code, same client): "
            f"{ms(median(walls))} wall, {ms(median(cpus))} CPU (medians of {rounds}); "
            f"status calls made: {status_calls}",
            "",
            format_table(
                [
                    "function (by own time, per relist, under cProfile)",
                    "where",
                    "calls",
                    "own",
                    "cum",
                ],
                rows,
            ),
        ]
    )


# --------------------------------------------------------------------- 2. HTTP


def bench_http(
    agent: AgentProcess,
    warmup: int,
    requests: int,
    outcome: Outcome,
    n_sandboxes: int,
    n_containers: int,
) -> None:
    section(
        f"2. Warm HTTP latency against the agent subprocess (keep-alive httpx client, "
        f"{warmup} warm-up + {requests} timed requests each)"
    )
    rows = []
    with httpx.Client(base_url=agent.url, timeout=10.0) as http:
        for path in HTTP_PATHS:
            expected = n_containers if path.startswith("/v1/containers") else n_sandboxes
            first = http.get(path)
            outcome.check(f"GET {path}", first.status_code == 200, str(first.status_code))
            if "output=text" in path:
                lines = [ln for ln in first.text.splitlines() if ln.strip()]
                outcome.check(
                    f"GET {path} lists every object",
                    len(lines) >= expected,
                    f"{len(lines)} lines for {expected} objects",
                )
            else:
                count = len(first.json()["items"])
                outcome.check(
                    f"GET {path} lists every object", count == expected, f"{count} != {expected}"
                )
            for _ in range(warmup):
                http.get(path)
            samples = []
            bad = 0
            for _ in range(requests):
                t0 = time.perf_counter()
                response = http.get(path)
                samples.append(time.perf_counter() - t0)
                bad += response.status_code != 200
            outcome.check(f"GET {path} always 200", bad == 0, f"{bad} other answers")
            s = latency_summary(samples)
            rows.append(
                (
                    f"GET {path}",
                    f"{len(first.content) / 1024:.0f} KiB",
                    ms(s["p50"]),
                    ms(s["p90"]),
                    ms(s["p99"]),
                    ms(s["max"]),
                )
            )
            outcome.target(
                f"GET {path} p50",
                ms(s["p50"]),
                f"<= {TARGET_P50_SECONDS * 1000:.0f} ms",
                s["p50"] <= TARGET_P50_SECONDS,
            )
    print(format_table(["request", "body", "p50", "p90", "p99", "max"], rows))


# --------------------------------------------------------------------- helpers


def wait_synced(
    agent: AgentProcess,
    sandboxes: set[str],
    containers: set[str],
    timeout: float = 90.0,
) -> float:
    """Until the agent lists every sandbox and every running container with its PID."""
    t0 = time.monotonic()
    last = ""
    while time.monotonic() - t0 < timeout:
        try:
            cs = agent.http.get("/v1/containers").json()["items"]
            ss = agent.http.get("/v1/sandboxes").json()["items"]
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            last = repr(exc)
        else:
            have_c = {c["id"] for c in cs if c["state"] == "running" and c["pid"]}
            have_s = {s["id"] for s in ss if s["state"] == "ready" and s["pause_pid"]}
            if have_c >= containers and have_s >= sandboxes:
                return time.monotonic() - t0
            last = f"{len(have_s)}/{len(sandboxes)} sandboxes, {len(have_c)}/{len(containers)}"
        if agent.proc.poll() is not None:
            raise RuntimeError(f"{agent.name} exited:\n{agent.log_tail()}")
        time.sleep(0.2)
    raise RuntimeError(f"{agent.name} did not sync within {timeout:.0f}s ({last})")


@dataclass(frozen=True)
class Idle:
    wall: float
    cpu: float
    versions: tuple[object, object]
    threads: list[tuple[str, float]]  # name, CPU seconds; busiest first

    @property
    def percent(self) -> float:
        return self.cpu / self.wall * 100

    @property
    def unchanged(self) -> bool:
        return self.versions[0] == self.versions[1]


def measure_idle(agents: Sequence[AgentProcess], seconds: float) -> list[Idle]:
    """CPU of each agent over one window in which nothing is asked of it."""
    versions0 = [node_info(a)["snapshot_version"] for a in agents]
    threads0 = [a.thread_cpu() for a in agents]
    cpu0 = [a.cpu_seconds() for a in agents]
    t0 = time.monotonic()
    time.sleep(seconds)
    cpu1 = [a.cpu_seconds() for a in agents]
    wall = time.monotonic() - t0
    threads1 = [a.thread_cpu() for a in agents]
    versions1 = [node_info(a)["snapshot_version"] for a in agents]
    results = []
    for i in range(len(agents)):
        per_thread: dict[str, float] = {}
        for tid, (name, after) in threads1[i].items():
            before = threads0[i].get(tid, (name, 0.0))[1]
            per_thread[name] = per_thread.get(name, 0.0) + after - before
        ranked = sorted(per_thread.items(), key=lambda kv: kv[1], reverse=True)
        results.append(
            Idle(wall, cpu1[i] - cpu0[i], (versions0[i], versions1[i]), [r for r in ranked if r[1]])
        )
    return results


def node_info(agent: AgentProcess) -> dict[str, object]:
    body: dict[str, object] = agent.http.get("/v1/node").json()
    return body


def expected_ids(pods: Sequence[PodHandle]) -> tuple[set[str], set[str]]:
    return (
        {p.sandbox_id for p in pods},
        {cid for p in pods for cid in p.container_ids.values()},
    )


# --------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> Outcome:
    outcome = Outcome()
    print(
        f"podlens inventory benchmark: {args.pods} pods x 2 busybox containers (sleep 3600, "
        f"pod network), real containerd, {psutil.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.2f}"
    )
    with Lab(workers=args.workers) as lab, agents_stopped_on_exit() as agents:
        assert lab.containerd is not None
        assert lab.containerd.pid is not None
        log(f"containerd up at {lab.endpoint}")

        default_agent = AgentProcess(lab.endpoint, lab.base, name="agent-default")
        agents.append(default_agent)
        ready_s = default_agent.wait_ready()
        info = node_info(default_agent)
        caps = info["capabilities"]
        assert isinstance(caps, dict)
        assert isinstance(info["runtime"], dict)
        relist = caps["relist_interval_seconds"]
        runtime = info["runtime"]
        time.sleep(1.0)
        rss_empty = default_agent.rss_bytes()
        log(f"agent ready in {ready_s:.2f}s with no pods, RSS {rss_empty / MIB:.1f} MiB")
        idle_empty = None
        if args.idle_empty_seconds > 0:
            log(f"idle CPU with no pods over {args.idle_empty_seconds:.0f}s")
            idle_empty = measure_idle([default_agent], args.idle_empty_seconds)[0]

        t0 = time.monotonic()
        log(f"creating {args.pods} pods with {args.workers} workers")
        pods = lab.create_pods(args.pods)
        create_s = time.monotonic() - t0
        sandboxes, containers = expected_ids(pods)
        log(f"{len(pods)} pods / {len(containers)} containers created in {create_s:.1f}s")
        sync_s = wait_synced(default_agent, sandboxes, containers)
        time.sleep(2.0)
        rss_synced = default_agent.rss_bytes()
        log(f"agent synced; RSS {rss_synced / MIB:.1f} MiB")

        print(
            f"runtime: {runtime.get('name')} {runtime.get('version')} "
            f"(CRI {runtime.get('cri_api_version')}); change source: {caps['change_source']}; "
            f"pods created in {create_s:.1f}s ({args.workers} threads); the running agent "
            f"listed them all {sync_s:.1f}s after the last one was created"
        )

        log("cold-start inventory rounds")
        asyncio.run(
            bench_cold(lab.endpoint, lab.containerd.pid, sandboxes, containers, args.reps, outcome)
        )

        log("HTTP latency")
        bench_http(
            default_agent, args.warmup, args.requests, outcome, len(sandboxes), len(containers)
        )
        rss_after_http = default_agent.rss_bytes()

        fast_agent = None
        if args.fast_relist > 0:
            fast_agent = AgentProcess(
                lab.endpoint,
                lab.base,
                extra_args=["--relist-interval", str(args.fast_relist)],
                name="agent-fast",
            )
            agents.append(fast_agent)
            fast_agent.wait_ready()
            wait_synced(fast_agent, sandboxes, containers)
        time.sleep(3.0)  # let start-up and the HTTP run settle

        section("3. Agent memory (RSS of the agent subprocess)")
        mem_rows = [
            ("agent started with no pods, synced", f"{rss_empty / MIB:.1f} MiB", ""),
            (
                f"same agent after syncing {len(containers)} containers",
                f"{rss_synced / MIB:.1f} MiB",
                f"<= {TARGET_RSS_BYTES / MIB:.0f} MiB",
            ),
            (
                f"same agent after the {len(HTTP_PATHS) * (args.warmup + args.requests)} "
                "HTTP requests",
                f"{rss_after_http / MIB:.1f} MiB",
                "",
            ),
        ]
        if fast_agent is not None:
            mem_rows.append(
                (
                    f"second agent, started with the {len(pods)} pods present",
                    f"{fast_agent.rss_bytes() / MIB:.1f} MiB",
                    "",
                )
            )
        print(format_table(["when", "RSS", "target"], mem_rows))
        outcome.target(
            f"agent RSS after syncing {len(containers)} containers",
            f"{rss_synced / MIB:.1f} MiB",
            f"<= {TARGET_RSS_BYTES / MIB:.0f} MiB",
            rss_synced <= TARGET_RSS_BYTES,
        )

        log(f"idle CPU over {args.idle_seconds:.0f}s")
        measured = [(default_agent, float(str(relist)))]
        if fast_agent is not None:
            measured.append((fast_agent, args.fast_relist))
        idle = measure_idle([a for a, _ in measured], args.idle_seconds)

        section(
            f"4. Agent CPU while nothing changes ({idle[0].wall:.1f} s"
            + (", both agents at once)" if len(measured) > 1 else ")")
        )
        cpu_rows = []
        if idle_empty is not None:
            cpu_rows.append(
                (
                    f"--relist-interval {float(str(relist)):g}, no pods yet",
                    f"{idle_empty.cpu * 1000:.0f} ms / {idle_empty.wall:.0f} s",
                    f"{idle_empty.percent:.2f}%",
                    f"{idle_empty.cpu / (idle_empty.wall / float(str(relist))) * 1000:.2f} ms",
                    "yes" if idle_empty.unchanged else "NO",
                    "",
                )
            )
        for (agent, interval), result in zip(measured, idle, strict=True):
            outcome.check(
                f"{agent.name}: snapshot unchanged while idle",
                result.unchanged,
                f"version {result.versions[0]} -> {result.versions[1]}",
            )
            is_default = agent is default_agent
            cpu_rows.append(
                (
                    f"--relist-interval {interval:g}"
                    + (" (default)" if is_default else "")
                    + f", {len(pods)} pods",
                    f"{result.cpu * 1000:.0f} ms / {result.wall:.0f} s",
                    f"{result.percent:.2f}%",
                    f"{result.cpu / (result.wall / interval) * 1000:.2f} ms",
                    "yes" if result.unchanged else "NO",
                    f"<= {TARGET_IDLE_CPU_PERCENT:.0f}%" if is_default else "",
                )
            )
            if is_default:
                outcome.target(
                    f"idle CPU at --relist-interval {interval:g}, {len(pods)} pods",
                    f"{result.percent:.2f}% of a core",
                    f"<= {TARGET_IDLE_CPU_PERCENT:.0f}%",
                    result.percent <= TARGET_IDLE_CPU_PERCENT,
                )
        print(
            format_table(
                [
                    "agent",
                    "CPU (user+sys)",
                    "% of one core",
                    "CPU per interval",
                    "snapshot unchanged",
                    "target",
                ],
                cpu_rows,
            )
        )
        print()
        print(
            f"{default_agent.name} by thread, as % of one core (on-CPU time from "
            "/proc/<pid>/task/*/schedstat, nanoseconds):"
        )
        windows = [(f"{len(pods)} pods ({idle[0].wall:.0f} s)", idle[0])]
        if idle_empty is not None:
            windows.insert(0, (f"no pods ({idle_empty.wall:.0f} s)", idle_empty))
        names = list(dict.fromkeys(n for _, w in windows for n, _ in w.threads))
        thread_rows = []
        for name in [*names, "all threads"]:
            row = [name]
            for _, w in windows:
                used = dict(w.threads)
                value = sum(used.values()) if name == "all threads" else used.get(name, 0.0)
                row.append(f"{value / w.wall * 100:.2f}%")
            thread_rows.append(row)
        print(format_table(["thread", *(label for label, _ in windows)], thread_rows))
        print()
        print(asyncio.run(warm_relist_cost(lab.endpoint)))
        log("tearing down (agents, pods, containerd)")
    return outcome


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_inventory", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--pods", type=int, default=110, help="pods to create (2 containers each)")
    parser.add_argument("--workers", type=int, default=4, help="threads creating pods")
    parser.add_argument("--reps", type=int, default=5, help="cold-start rounds per way")
    parser.add_argument("--requests", type=int, default=300, help="timed HTTP requests per URL")
    parser.add_argument("--warmup", type=int, default=20, help="warm-up HTTP requests per URL")
    parser.add_argument(
        "--idle-seconds", type=float, default=30.0, help="idle window for the CPU figure"
    )
    parser.add_argument(
        "--idle-empty-seconds",
        type=float,
        default=10.0,
        help="idle window with no pods, before they are created (0: skip)",
    )
    parser.add_argument(
        "--fast-relist",
        type=float,
        default=0.25,
        help="relist interval of a second agent measured alongside (0: none)",
    )
    args = parser.parse_args(argv)

    problem = lab_problem()
    if problem:
        print(f"cannot run: {problem}", file=sys.stderr)
        return 2
    raise_on_sigterm()
    started = time.monotonic()
    try:
        outcome = run(args)
    except (Terminated, KeyboardInterrupt):
        print("interrupted; lab torn down", file=sys.stderr)
        return 2
    elapsed = time.monotonic() - started

    section("Summary")
    print(format_table(["metric", "measured", "target", "result"], outcome.summary))
    print(f"\nwhole run: {elapsed:.0f} s; load average at the end {os.getloadavg()[0]:.2f}")
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
    return status


if __name__ == "__main__":
    sys.exit(main())
