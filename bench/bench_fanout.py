"""kubectl podlens fan-out: cluster-wide diagnose over the real nodes, and a simulated fleet.

Run from the repository root::

    python -m bench.bench_fanout [--lab-dir DIR] [--runs 10] [--agents 500]
        [--concurrency 32] [--deadline 1.0]

Part 1, the real nodes (needs root and the upstream binaries, as ``lab up
--real``): with ``--lab-dir`` a running real lab is used as it is, otherwise
one is started in a temporary directory with ``--nodes`` nodes in all
(``lab.upstream.nodes`` adds the others) and taken down at the end. The plugin runs
as people run it (``kubectl_podlens.cli.main``: kubeconfig, TokenRequest,
a port-forward per node through the API server, TLS to each agent) for
``diagnose -A``, every node at once and each node alone; printed: p50 and
p90 of the whole command, and the cost per node (p50 of all nodes, over the
number of nodes, beside one node alone). Every run's answer is checked: exit
status 0 and each node present.

Part 2, a SIMULATION (clearly not a cluster): ``--agents`` in-process agents
behind httpx transports, each answering ``/v1/diagnostics`` with the agent's
own wire model after a lognormal delay (median 20 ms), 2% answering 503, 1%
answering 401 and 2% never answering. The same ``diagnose`` command runs
with ``--concurrency`` at once and ``--deadline`` per node, then one at a
time. Printed: total time against its bound
``ceil(agents / concurrency) * deadline``, peak Python memory per node
answered (tracemalloc), and the one-at-a-time time beside it. Checked: every
node is either answered or listed with the injected reason.

Targets: simulation total <= its bound; real-node p50 of one node <= 2 s.
Exit status: 0 met, 1 missed, 2 a wrong answer or the lab could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import math
import random
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from agent.api.schemas import FindingItem, NodeDiagnostics
from bench._harness import (
    MIB,
    Outcome,
    format_table,
    free_port,
    log,
    machine,
    ms,
    percentile,
    ratio,
    run_benchmark,
    section,
)
from kubectl_podlens import cli
from kubectl_podlens.agents import AgentApi, TransportLinks
from kubectl_podlens.errors import EXIT_OK, EXIT_PARTIAL
from kubectl_podlens.model import AgentPod

TARGET_ONE_NODE_P50 = 2.0
FINDINGS_PER_NODE = 5


# --------------------------------------------------------------------------
# Part 2: the simulated fleet
# --------------------------------------------------------------------------


class SimulatedFleet:
    """An API server listing ``count`` agents, and their in-process answers with faults."""

    default_namespace = "default"

    def __init__(self, count: int, seed: int = 14) -> None:
        rng = random.Random(seed)
        self.names = [f"sim-node-{i:04}" for i in range(count)]
        self.delay = {n: rng.lognormvariate(math.log(0.020), 0.5) for n in self.names}
        self.fault: dict[str, str] = {}
        for n in self.names:
            roll = rng.random()
            if roll < 0.02:
                self.fault[n] = "hang"
            elif roll < 0.04:
                self.fault[n] = "503"
            elif roll < 0.05:
                self.fault[n] = "401"
        self.bodies = {n: self._body(n) for n in self.names}

    @staticmethod
    def _body(node: str) -> bytes:
        items = [
            FindingItem(
                rule="crashloop",
                severity="error",
                namespace="default",
                pod=f"{node}-pod-{i}",
                container="app",
                summary="back-off restarting failed container",
                evidence=[],
                cause="the container exits with status 1",
                next_steps=["kubectl logs --previous"],
                since=None,
            )
            for i in range(FINDINGS_PER_NODE)
        ]
        answer = NodeDiagnostics(
            node_name=node, pods_checked=30, pods_with_findings=FINDINGS_PER_NODE, items=items
        )
        return answer.model_dump_json().encode()

    def agents(self, namespace: str, selector: str) -> list[AgentPod]:
        return [
            AgentPod(n, "podlens-system", f"agent-{n}", True, "", 8470, "podlens:0.1.0")
            for n in self.names
        ]

    def nodes(self) -> list[str] | None:
        return list(self.names)

    def node_of(self, namespace: str, name: str) -> str:
        raise NotImplementedError

    def matching_pods(self, namespace: str | None, selector: str) -> set[tuple[str, str]]:
        raise NotImplementedError

    def transport(self, agent: AgentPod) -> httpx.AsyncBaseTransport:
        node = agent.node

        async def handle(request: httpx.Request) -> httpx.Response:
            fault = self.fault.get(node)
            if fault == "hang":
                await asyncio.sleep(3600)
            await asyncio.sleep(self.delay[node])
            if fault in ("503", "401"):
                return httpx.Response(int(fault), json={"error": "x", "message": "injected"})
            return httpx.Response(
                200, content=self.bodies[node], headers={"content-type": "application/json"}
            )

        return httpx.MockTransport(handle)


def simulate(
    fleet: SimulatedFleet, concurrency: int, deadline: float
) -> tuple[float, int, dict[str, Any], int]:
    """One ``diagnose -A -o json`` over the fleet: seconds, exit status, document, peak bytes."""
    options = cli.options_from(
        [
            "diagnose",
            "-A",
            "-o",
            "json",
            "--concurrency",
            str(concurrency),
            "--node-timeout",
            str(deadline),
        ]
    )
    out = io.StringIO()
    tracemalloc.start()
    started = time.monotonic()
    status = asyncio.run(
        cli.run(options, fleet, AgentApi(TransportLinks(fleet.transport)), out, io.StringIO())
    )
    took = time.monotonic() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return took, status, json.loads(out.getvalue()), peak


def check_simulation(
    outcome: Outcome, fleet: SimulatedFleet, status: int, doc: dict[str, Any], label: str
) -> int:
    answered = {i["node"] for i in doc["items"]}
    unreached = {u["node"]: u["reason"] for u in doc["unreached"]}
    expected = {"hang": "timed out", "503": "agent not ready", "401": "401 unauthorized"}
    outcome.check(
        f"simulation ({label}): every node answered or listed with its injected reason",
        answered | set(unreached) == set(fleet.names)
        and not answered & set(unreached)
        and all(unreached.get(n) == expected[f] for n, f in fleet.fault.items())
        and len(answered) == len(fleet.names) - len(fleet.fault),
        f"{len(answered)} answered, {len(unreached)} unreached",
    )
    outcome.check(
        f"simulation ({label}): exit status says partial",
        status == (EXIT_PARTIAL if fleet.fault else EXIT_OK),
        str(status),
    )
    return len(answered)


def run_simulation(outcome: Outcome, args: argparse.Namespace) -> None:
    section(f"SIMULATION: {args.agents} in-process agents (not a cluster)")
    fleet = SimulatedFleet(args.agents)
    faults = {k: sum(1 for f in fleet.fault.values() if f == k) for k in ("hang", "503", "401")}
    print(
        f"agents {args.agents}; injected: {faults['hang']} never answer, {faults['503']} answer "
        f"503, {faults['401']} answer 401; delay lognormal, median 20 ms; "
        f"{FINDINGS_PER_NODE} findings per node; deadline {args.deadline:g}s per node"
    )
    rows = []
    took, status, doc, peak = simulate(fleet, args.concurrency, args.deadline)
    answered = check_simulation(outcome, fleet, status, doc, f"concurrency {args.concurrency}")
    bound = math.ceil(args.agents / args.concurrency) * args.deadline
    rows.append(
        [
            f"concurrency {args.concurrency}",
            f"{took:.2f}s",
            f"{bound:.1f}s",
            f"{peak / answered / 1024:.1f} KiB",
            f"{peak / MIB:.1f} MiB",
        ]
    )
    outcome.target(
        f"simulated diagnose, {args.agents} agents, concurrency {args.concurrency}",
        f"{took:.2f}s",
        f"<= ceil(n/N) * deadline = {bound:.1f}s",
        took <= bound,
    )
    outcome.info(
        "simulated memory per node answered (peak, tracemalloc)",
        f"{peak / answered / 1024:.1f} KiB",
    )
    log("one at a time (concurrency 1)")
    one_took, one_status, one_doc, one_peak = simulate(fleet, 1, args.deadline)
    check_simulation(outcome, fleet, one_status, one_doc, "one at a time")
    rows.append(
        [
            "one at a time",
            f"{one_took:.2f}s",
            f"{args.agents * args.deadline:.0f}s",
            f"{one_peak / answered / 1024:.1f} KiB",
            f"{one_peak / MIB:.1f} MiB",
        ]
    )
    print(format_table(["run", "total", "bound", "memory per node answered", "peak"], rows))
    print(f"one at a time / concurrent: {ratio(one_took, took)}")
    outcome.info("simulated one-at-a-time / concurrent", ratio(one_took, took))


# --------------------------------------------------------------------------
# Part 1: the real nodes
# --------------------------------------------------------------------------


def _lab(*args: str, lab_dir: Path, timeout: float = 900) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "lab", *args, "--dir", str(lab_dir)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"lab {' '.join(args)} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


@contextlib.contextmanager
def real_lab(lab_dir: str | None, nodes: int) -> Iterator[dict[str, Any]]:
    if lab_dir is not None:
        yield json.loads(_lab("status", lab_dir=Path(lab_dir)))
        return
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
        path = Path(tmp) / "lab"
        log("lab up --real")
        try:
            _lab("up", "--real", "--port", str(free_port()), lab_dir=path)
            if nodes > 1:
                log(f"{nodes - 1} more nodes (lab.upstream.nodes)")
                more = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "lab.upstream.nodes",
                        "add",
                        "--dir",
                        str(path),
                        "--count",
                        str(nodes - 1),
                    ],
                    capture_output=True,
                    text=True,
                    timeout=900,
                    check=False,
                )
                if more.returncode != 0:
                    raise RuntimeError(f"adding nodes failed: {more.stderr.strip()[-2000:]}")
            yield json.loads(_lab("status", lab_dir=path))
        finally:
            log("lab down")
            _lab("down", lab_dir=path)


def plugin(argv: Sequence[str]) -> tuple[float, int, str]:
    out, err = io.StringIO(), io.StringIO()
    started = time.monotonic()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli.main(list(argv))
    return time.monotonic() - started, status, out.getvalue()


def run_real(outcome: Outcome, args: argparse.Namespace) -> None:
    section("The real nodes: kubectl podlens diagnose -A through the API server")
    with real_lab(args.lab_dir, args.nodes) as status:
        kubeconfig = status["kubeconfig"]
        common = [
            "--kubeconfig",
            kubeconfig,
            "--as-serviceaccount",
            "default/lab-operator",
            "-o",
            "json",
        ]
        nodes = json.loads(
            subprocess.run(
                ["kubectl", "--kubeconfig", kubeconfig, "get", "nodes", "-o", "json"],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout
        )["items"]
        names = sorted(n["metadata"]["name"] for n in nodes)
        print(f"nodes: {', '.join(names)}; runs: {args.runs}")
        every: list[float] = []
        single: list[float] = []
        for i in range(args.runs):
            took, code, out = plugin(["diagnose", "-A", *common])
            doc = json.loads(out) if out else {}
            ok = code == EXIT_OK and set(doc.get("nodes", {})) == set(names)
            if outcome.check(
                f"real diagnose -A run {i}: every node answered",
                ok,
                f"exit {code}, {doc.get('unreached')}",
            ):
                every.append(took)
            took, code, out = plugin(["diagnose", "-A", "--node", names[0], *common])
            if outcome.check(f"real diagnose -A --node run {i}", code == EXIT_OK, f"exit {code}"):
                single.append(took)
        if not every or not single:
            return
        rows = [
            [f"all {len(names)} nodes", ms(percentile(every, 50)), ms(percentile(every, 90))],
            [f"one node ({names[0]})", ms(percentile(single, 50)), ms(percentile(single, 90))],
        ]
        print(format_table(["diagnose -A", "p50", "p90"], rows))
        per_node = percentile(every, 50) / len(names)
        extra = (percentile(every, 50) - percentile(single, 50)) / max(1, len(names) - 1)
        print(
            f"per node: p50 / nodes = {ms(per_node)}; each node beyond the first adds {ms(extra)}"
        )
        outcome.info(f"real diagnose -A p50, {len(names)} nodes", ms(percentile(every, 50)))
        outcome.info("real cost per node (p50 / nodes)", ms(per_node))
        outcome.info("real cost of each node beyond the first", ms(extra))
        outcome.target(
            "real diagnose of one node p50",
            ms(percentile(single, 50)),
            f"<= {ms(TARGET_ONE_NODE_P50)}",
            percentile(single, 50) <= TARGET_ONE_NODE_P50,
        )


def run(args: argparse.Namespace) -> Outcome:
    outcome = Outcome()
    print(machine())
    if not args.simulation_only:
        run_real(outcome, args)
    run_simulation(outcome, args)
    return outcome


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_fanout", description=__doc__)
    parser.add_argument("--lab-dir", help="a running `lab up --real` to use (else one is started)")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument(
        "--nodes", type=int, default=3, help="real nodes when the bench starts its own lab"
    )
    parser.add_argument("--agents", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--deadline", type=float, default=1.0)
    parser.add_argument("--simulation-only", action="store_true", help="skip the real nodes")
    args = parser.parse_args(argv)
    return run_benchmark("bench_fanout", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
