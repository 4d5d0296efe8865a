"""Inventory benchmark against a real containerd with N pods (default 110 x 2 containers).

Run as root from the repository root::

    python -m bench.bench_inventory [--pods 110]

Measures, in one run and side by side:

1. cold start to a complete inventory with every PID, three ways in the
   same rounds: the same work (two lists, then the verbose status of every
   sandbox and container) one call after another and concurrently (the
   agent's ``NodeState.refresh_once`` with its bulk path turned off), and
   the agent's own way (above ``verbose_batch_limit`` objects: plain status
   calls and one scan of /proc for the PIDs); with the ratios between them,
   and checks that every way found the same IDs and PIDs, and that the PIDs
   are the right processes in /proc;
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
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio
import httpx
import psutil

from agent import host
from agent.cri import CriClient, _convert
from agent.domain.model import Container, Sandbox
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
    stopped_on_exit,
    time_get,
    wait_until,
)
from bench._lab import LAB_ERRORS, NODE, AgentProcess, Lab, lab_problem
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
# Far above any node: every refresh takes the verbose path.
NO_BULK = 1 << 30


@dataclass(frozen=True)
class Inventory:
    """What a cold start found: sandbox ID -> pause PID, container ID -> PID."""

    sandboxes: dict[str, int | None]
    containers: dict[str, int | None]

    def describe_difference(self, other: Inventory) -> str:
        """What differs from ``other``, counted by kind."""
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


# --------------------------------------------------------------------- 1. cold start


class CountingClient(CriClient):
    """A ``CriClient`` that counts its status calls, verbose and plain."""

    def __init__(self, endpoint: str, *, timeout: float) -> None:
        super().__init__(endpoint, timeout=timeout)
        self.verbose_calls = 0
        self.plain_calls = 0

    def reset(self) -> None:
        """Start counting again."""
        self.verbose_calls = self.plain_calls = 0

    def _count(self, verbose: bool) -> None:
        if verbose:
            self.verbose_calls += 1
        else:
            self.plain_calls += 1

    async def sandbox_status(self, sandbox_id: str, *, verbose: bool = True) -> Sandbox:
        """Counted, then as ``CriClient``."""
        self._count(verbose)
        return await super().sandbox_status(sandbox_id, verbose=verbose)

    async def container_status(
        self, listed: Container, *, verbose: bool = True
    ) -> tuple[Container, bool]:
        """Counted, then as ``CriClient``."""
        self._count(verbose)
        return await super().container_status(listed, verbose=verbose)


async def _fresh_client(endpoint: str, settings: Settings) -> CountingClient:
    client = CountingClient(endpoint, timeout=settings.cri_timeout_seconds)
    # As the agent does before its first refresh: connects the channel and
    # tells the client which runtime's verbose format to read.
    await client.version()
    return client


class _Meter:
    """Wall time, this process's CPU and containerd's CPU over a ``with`` block."""

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


@dataclass(frozen=True)
class ColdRun:
    """One cold inventory: its time, CPU, the status calls it made, and what it found."""

    way: str
    seconds: float
    cpu_seconds: float  # this process, all threads (event loop + grpc + /proc scan)
    containerd_cpu_seconds: float
    verbose_calls: int
    plain_calls: int
    inventory: Inventory


@dataclass(frozen=True)
class Way:
    """A way to a complete inventory: its label, what it asks, and how it is run."""

    key: str
    label: str
    asks: str
    settings: Settings | None  # None: one verbose status after another, no NodeState


def ways(settings: Settings, objects: int) -> list[Way]:
    """The same verbose work one by one and at once, and the agent's own way, as configured."""
    conc = settings.status_concurrency
    limit = settings.verbose_batch_limit
    bulk = objects > limit
    return [
        Way("one-by-one", "verbose, one after another", "2 lists + 1 verbose status each", None),
        Way(
            "at-once",
            f"verbose, up to {conc} at once",
            "2 lists + 1 verbose status each",
            settings.model_copy(update={"verbose_batch_limit": NO_BULK}),
        ),
        Way(
            "agent",
            "the agent's own way",
            (
                "2 lists + 1 plain status each + one /proc scan"
                if bulk
                else f"as above: {objects} objects <= verbose_batch_limit {limit}"
            ),
            settings,
        ),
    ]


async def run_way(way: Way, client: CountingClient, containerd: psutil.Process) -> ColdRun:
    """One cold inventory the given way, on an empty snapshot."""
    client.reset()
    if way.settings is None:
        sandboxes: dict[str, int | None] = {}
        containers: dict[str, int | None] = {}
        with _Meter(containerd) as m:
            listed_sandboxes = await client.list_sandboxes()
            listed_containers = await client.list_containers()
            for sb in listed_sandboxes:
                full = await client.sandbox_status(sb.id)
                sandboxes[full.id] = full.pause_pid
            for c in listed_containers:
                merged, _ = await client.container_status(c)
                containers[merged.id] = merged.pid
        inventory = Inventory(sandboxes, containers)
    else:
        node = NodeState(way.settings)
        with _Meter(containerd) as m:
            await node.refresh_once(client)
        snap = node.snapshot
        inventory = Inventory(
            {s.id: s.pause_pid for s in snap.sandboxes.values()},
            {c.id: c.pid for c in snap.containers.values()},
        )
    return ColdRun(
        way.key, m.seconds, m.cpu, m.ctr, client.verbose_calls, client.plain_calls, inventory
    )


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
    endpoint: str, containerd: psutil.Process, *, concurrency: int, rounds: int = 3
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


async def profile_way(endpoint: str, way: Way, top: int = 10) -> str:
    """One cold refresh of ``way`` under cProfile: where the event loop's time goes."""
    assert way.settings is not None
    client = await _fresh_client(endpoint, way.settings)
    try:
        node = NodeState(way.settings)
        profiler = cProfile.Profile()
        t0 = time.perf_counter()
        profiler.enable()
        await node.refresh_once(client)
        profiler.disable()
        wall = time.perf_counter() - t0
    finally:
        await client.close()
    raw = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values())  # tottime over every function

    def cum_of(name: str) -> float:
        return max((v[3] for (_file, _line, func), v in raw.items() if name == func), default=0.0)

    rows = []
    for (filename, line, func), (_cc, nc, tt, ct, _callers) in sorted(
        raw.items(), key=lambda kv: kv[1][2], reverse=True
    )[:top]:
        where = f"{Path(filename).name}:{line}" if line else filename
        rows.append((func, where, nc, ms(tt), f"{tt / wall * 100:.0f}%", ms(ct)))
    named = (
        "sandbox_from_status",
        "container_from_status",
        "parse_sandbox_info",
        "parse_container_info",
        "loads",
    )
    return "\n".join(
        [
            f"{way.label}, one refresh under cProfile: {ms(wall)} wall "
            f"({ms(total)} of Python function time recorded in the event loop's thread)",
            "cumulative: "
            + ", ".join(
                f"{name} {ms(cum_of(name))} ({cum_of(name) / wall * 100:.0f}%)" for name in named
            ),
            "",
            format_table(
                ["function (by own time)", "where", "calls", "own", "of wall", "cum"], rows
            ),
        ]
    )


async def time_scan(rounds: int = 5) -> tuple[float, int]:
    """The /proc scan alone (median seconds of ``rounds``), and how many processes it read."""
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        await asyncio.to_thread(host.main_pids_by_container)
        times.append(time.perf_counter() - t0)
    return median(times), len(psutil.pids())


async def bench_cold(
    endpoint: str,
    containerd_pid: int,
    expected_sandboxes: set[str],
    expected_containers: set[str],
    reps: int,
    outcome: Outcome,
) -> None:
    """Section 1: the three ways side by side, the concurrency sweep, and where time goes."""
    containerd = psutil.Process(containerd_pid)
    settings = Settings(cri_endpoint=endpoint, node_name=NODE)
    objects = len(expected_sandboxes) + len(expected_containers)
    all_ways = ways(settings, objects)
    by_key = {w.key: w for w in all_ways}
    section(
        f"1. Cold start to a complete inventory ({len(expected_sandboxes)} sandboxes, "
        f"{len(expected_containers)} containers, every PID)"
    )
    print(
        f"Each way starts from a fresh CriClient (after Version) and an empty snapshot. "
        f"{reps} rounds; in each, every way runs once, the order rotating. The concurrent "
        f"ways run NodeState.refresh_once (status_concurrency={settings.status_concurrency}, "
        f"verbose_batch_limit={settings.verbose_batch_limit}; 'verbose, at once' with the "
        "limit raised so that it never takes the plain path)."
    )

    runs: dict[str, list[ColdRun]] = {w.key: [] for w in all_ways}
    reference: Inventory | None = None
    differ: list[str] = []
    for rep in range(reps):
        client = await _fresh_client(endpoint, settings)
        try:
            order = all_ways[rep % len(all_ways) :] + all_ways[: rep % len(all_ways)]
            for way in order:
                done = await run_way(way, client, containerd)
                runs[way.key].append(done)
                if reference is None:
                    reference = done.inventory
                elif done.inventory != reference:
                    differ.append(
                        f"round {rep + 1}, {way.label}: "
                        f"{reference.describe_difference(done.inventory)}"
                    )
        finally:
            await client.close()
    assert reference is not None
    outcome.check(
        f"all three ways found the same IDs and PIDs in all {reps * len(all_ways)} runs",
        not differ,
        "; ".join(differ[:3]),
    )
    problems = verify_inventory(reference, expected_sandboxes, expected_containers)
    outcome.check(
        "the inventory is the pods created, each PID /pause or 'sleep 3600' in /proc",
        not problems,
        "; ".join(problems),
    )

    rows = []
    for way in all_ways:
        rs = runs[way.key]
        times = [r.seconds for r in rs]
        rows.append(
            (
                way.label,
                way.asks,
                ms(median(times)),
                ms(min(times)),
                ms(max(times)),
                ms(median([r.cpu_seconds for r in rs])),
                ms(median([r.containerd_cpu_seconds for r in rs])),
                f"{rs[0].verbose_calls} / {rs[0].plain_calls}",
            )
        )
    print()
    print(
        format_table(
            [
                "way",
                "asks",
                "median",
                "min",
                "max",
                "bench CPU (med)",
                "containerd CPU (med)",
                "status calls verbose / plain",
            ],
            rows,
        )
    )
    med = {k: median([r.seconds for r in rs]) for k, rs in runs.items()}
    low = {k: min(r.seconds for r in rs) for k, rs in runs.items()}
    print()
    print(
        format_table(
            ["ratio", "compares", "on medians", "on minimums"],
            [
                (
                    f"{by_key['one-by-one'].label} / {by_key['at-once'].label}",
                    "the same calls",
                    ratio(med["one-by-one"], med["at-once"]),
                    ratio(low["one-by-one"], low["at-once"]),
                ),
                (
                    f"{by_key['at-once'].label} / {by_key['agent'].label}",
                    "concurrent, verbose vs the agent's calls",
                    ratio(med["at-once"], med["agent"]),
                    ratio(low["at-once"], low["agent"]),
                ),
                (
                    f"{by_key['one-by-one'].label} / {by_key['agent'].label}",
                    "the obvious client vs the agent",
                    ratio(med["one-by-one"], med["agent"]),
                    ratio(low["one-by-one"], low["agent"]),
                ),
            ],
        )
    )
    if objects > settings.verbose_batch_limit:
        scan_s, processes = await time_scan()
        print(
            f"\nthe /proc scan alone: {ms(scan_s)} (median of 5, {processes} processes on this "
            "host); in the agent's way it runs in a thread next to the plain status calls"
        )
    outcome.target(
        "cold inventory, verbose one after another / the agent's own way (median)",
        f"{ratio(med['one-by-one'], med['agent'])} ({ms(med['one-by-one'])} / {ms(med['agent'])})",
        f">= {TARGET_RATIO:.0f}x",
        med["one-by-one"] / med["agent"] >= TARGET_RATIO,
    )
    outcome.info(
        "cold inventory, the same verbose calls one after another / at once (median)",
        f"{ratio(med['one-by-one'], med['at-once'])} "
        f"({ms(med['one-by-one'])} / {ms(med['at-once'])})",
    )

    # Where the time goes, and whether the concurrency limit matters.
    section(
        "1b. status_concurrency sweep (both concurrent ways; one after another in the same rounds)"
    )
    sweep: dict[str, list[float]] = {}
    for _round in range(reps):
        client = await _fresh_client(endpoint, settings)
        try:
            done = await run_way(by_key["one-by-one"], client, containerd)
            sweep.setdefault("one-by-one", []).append(done.seconds)
            for conc in SWEEP_CONCURRENCY:
                for key in ("at-once", "agent"):
                    base = by_key[key].settings
                    assert base is not None
                    way = Way(key, "", "", base.model_copy(update={"status_concurrency": conc}))
                    done = await run_way(way, client, containerd)
                    sweep.setdefault(f"{key} {conc}", []).append(done.seconds)
                    if done.inventory != reference:
                        outcome.check(
                            f"sweep {by_key[key].label} at c={conc}: the same inventory",
                            False,
                            reference.describe_difference(done.inventory),
                        )
        finally:
            await client.close()
    one_med = median(sweep["one-by-one"])
    sweep_rows = []
    for conc in SWEEP_CONCURRENCY:
        verbose_med = median(sweep[f"at-once {conc}"])
        agent_med = median(sweep[f"agent {conc}"])
        sweep_rows.append(
            (
                str(conc),
                ms(verbose_med),
                ratio(one_med, verbose_med),
                ms(agent_med),
                ratio(one_med, agent_med),
            )
        )
    print(
        f"{by_key['one-by-one'].label}: {ms(one_med)} median over the same {reps} rounds\n"
        + format_table(
            [
                "status_concurrency",
                "verbose, at once",
                "one after another / this",
                "the agent's own way",
                "one after another / this",
            ],
            sweep_rows,
        )
    )

    section("1c. Where the concurrent ways spend their time (Python side)")
    client = await _fresh_client(endpoint, settings)
    try:
        cost = await conversion_cost(endpoint, client)
    finally:
        await client.close()
    verbose_med = med["at-once"]
    print(
        f"{int(cost['responses'])} verbose status responses, "
        f"{cost['bytes_per_response'] / 1024:.1f} KiB each on average"
    )
    print(
        format_table(
            [
                "step (all verbose responses, no I/O, best of 5)",
                "time",
                f"of '{by_key['at-once'].label}' median",
            ],
            [
                (label, ms(cost[key]), f"{cost[key] / verbose_med * 100:.0f}%")
                for label, key in (
                    ("protobuf parse", "protobuf_parse"),
                    ("json.loads of info['info']", "json_loads"),
                    ("whole conversion (_convert.*_from_status)", "convert_total"),
                )
            ],
        )
    )
    for key in ("at-once", "agent"):
        print()
        print(await profile_way(endpoint, by_key[key]))
    print(
        "(cProfile counts each resumption of a coroutine as a call, and does not see the "
        "worker thread that scans /proc)"
    )

    section("1d. The status calls alone (bare gRPC stubs, nothing converted)")
    floor = await runtime_floor(endpoint, containerd, concurrency=settings.status_concurrency)
    print(
        format_table(
            ["calls", "wall (med of 3)", "bench CPU", "containerd CPU"],
            [(name, ms(w), ms(c), ms(k)) for name, w, c, k in floor],
        )
    )
    tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
    cpus = os.cpu_count() or 1
    print(
        f"containerd's CPU times are in clock ticks ({tick_ms:.0f} ms); with {cpus} CPUs "
        f"the wall time of any client is bounded below by (bench CPU + containerd CPU) / {cpus}."
    )


async def warm_relist_cost(endpoint: str, rounds: int = 30, top: int = 10) -> str:
    """What one relist costs in-process when nothing changed, and where it goes."""
    settings = Settings(cri_endpoint=endpoint, node_name=NODE)
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
    """Section 2: each path's latency; every answer must be 200 and list every object."""
    section(
        f"2. Warm HTTP latency against the agent subprocess (keep-alive httpx client, "
        f"{warmup} warm-up + {requests} timed requests each)"
    )
    rows = []
    with httpx.Client(base_url=agent.url, timeout=10.0) as http:
        for path in HTTP_PATHS:
            expected = n_containers if path.startswith("/v1/containers") else n_sandboxes
            text = "output=text" in path

            def lists_all(
                response: httpx.Response, expected: int = expected, text: bool = text
            ) -> str | None:
                if text:
                    # A header line, then one line per object.
                    count = sum(1 for ln in response.text.splitlines() if ln.strip()) - 1
                else:
                    count = len(response.json()["items"])
                return None if count == expected else f"{count} objects, not {expected}"

            timed = time_get(http, path, requests, warmup, check=lists_all)
            outcome.check(
                f"GET {path}: every answer 200 and lists all {expected} objects",
                not timed.bad,
                f"{len(timed.bad)} not, e.g. {timed.bad[:2]}",
            )
            rows.append(
                (f"GET {path}", f"{timed.body_bytes / 1024:.0f} KiB", *latency_cells(timed.samples))
            )
            p50 = percentile(timed.samples, 50)
            outcome.target(
                f"GET {path} p50",
                ms(p50),
                f"<= {TARGET_P50_SECONDS * 1000:.0f} ms",
                p50 <= TARGET_P50_SECONDS,
            )
    print(format_table(["request", "body", *LATENCY_HEADER], rows))


# --------------------------------------------------------------------- helpers


def wait_synced(
    agent: AgentProcess, sandboxes: set[str], containers: set[str], timeout: float = 90.0
) -> float:
    """Until the agent lists every sandbox and every running container with its PID."""

    def synced() -> bool:
        if not agent.alive():
            raise RuntimeError(f"{agent.name} exited:\n{agent.log_tail()}")
        cs = agent.http.get("/v1/containers").json()["items"]
        ss = agent.http.get("/v1/sandboxes").json()["items"]
        have_c = {c["id"] for c in cs if c["state"] == "running" and c["pid"]}
        have_s = {s["id"] for s in ss if s["state"] == "ready" and s["pause_pid"]}
        return have_c >= containers and have_s >= sandboxes

    _, seconds = wait_until(f"{agent.name} lists every object with its PID", synced, timeout)
    return seconds


@dataclass(frozen=True)
class Idle:
    """One idle window of one agent: its CPU, its snapshot version before and after."""

    wall: float
    cpu: float
    versions: tuple[object, object]
    threads: list[tuple[str, float]]  # name, CPU seconds; busiest first

    @property
    def percent(self) -> float:
        """CPU as % of one core."""
        return self.cpu / self.wall * 100

    @property
    def unchanged(self) -> bool:
        """Whether the snapshot did not move in the window."""
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
    """``GET /v1/node``."""
    body: dict[str, object] = agent.http.get("/v1/node").json()
    return body


def expected_ids(pods: Sequence[PodHandle]) -> tuple[set[str], set[str]]:
    """The sandbox and container IDs the pods were created with."""
    return (
        {p.sandbox_id for p in pods},
        {cid for p in pods for cid in p.container_ids.values()},
    )


# --------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> Outcome:
    """The whole run, sections 1 to 4."""
    outcome = Outcome()
    print(
        f"podlens inventory benchmark: {args.pods} pods x 2 busybox containers (sleep 3600, "
        f"pod network), real containerd; {machine()}"
    )
    with Lab(workers=args.workers) as lab, stopped_on_exit() as agents:
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
    """Parse the options and run."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_inventory", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--pods", type=int, default=110, help="pods to create (2 containers each)")
    parser.add_argument("--workers", type=int, default=4, help="threads creating pods")
    parser.add_argument("--reps", type=int, default=5, help="cold-start rounds (every way once)")
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
    if args.pods < 1 or args.reps < 1 or args.requests < 1:
        parser.error("--pods, --reps and --requests must be positive")
    return run_benchmark(
        "bench_inventory", lambda: run(args), cannot_run=lab_problem(), errors=LAB_ERRORS
    )


if __name__ == "__main__":
    sys.exit(main())
