"""Fidelity of the stand-in lab against the real node, and kubectl's latency on each, in one run.

Run as root from the repository root, with the upstream binaries built
(``scripts/upstream/build.sh kubernetes etcd``, cached by version)::

    python -m bench.bench_fidelity [--scenario NAME ...] [--kubectl-runs 20]

1. ``lab up`` (the stand-in API server and kubelet) and ``lab up --real``
   (upstream's), side by side on fresh lab directories.
2. The same pods on both at once (``lab.fidelity.SCENARIOS``: the crash
   loop, the stuck and the failing init container, a sidecar pod, Error with
   restartPolicy Never, Completed, a failing readiness probe, an image that
   cannot be pulled, a pause kill, a graceful deletion), each watched for
   its time: every observable a learner or the agent reads, sampled every
   half second, then the runtime's view. Every difference is printed with
   both values; the ones ``lab.fidelity.KNOWN`` explains say why.
3. ``kubectl get pods`` against each API server, alternating, the same
   number of times: latency side by side and the ratio.

Exit status: 0 when every difference is explained, 1 when one is not, 2
when a node could not run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

from bench._harness import (
    LATENCY_HEADER,
    Outcome,
    format_table,
    free_port,
    latency_cells,
    log,
    machine,
    median,
    percentile,
    ratio,
    run_benchmark,
    section,
    signals_held,
    wait_until,
)
from bench._lab import LAB_ERRORS
from lab import fidelity
from lab.node import LabNode
from lab.upstream import realnode
from lab.upstream.cluster import NotBuilt


def cannot_run() -> str | None:
    """Why this machine cannot run both nodes, or None."""
    if os.geteuid() != 0:
        return "the nodes start containerd, kubelets and a pod network: run as root"
    for tool in ("containerd", "runc", "kubectl", "buildah"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/install-deps.sh installs it)"
    try:
        realnode.binaries()
    except NotBuilt as exc:
        return str(exc)
    return None


@contextmanager
def node_up(label: str, lab_dir: Path, *, real: bool) -> Iterator[LabNode]:
    """``lab up`` (``--real``), until pods can be made; ``lab down`` after."""
    node = LabNode(lab_dir, port=free_port(), progress=lambda m: log(f"{label}: {m}"), real=real)
    try:
        node.up()
        if real:
            state = node.require_state()
            wait_until(
                "a pod can be made (ServiceAccount, root CA)",
                lambda: realnode.pods_can_be_made(state),
                60,
            )
        yield node
    finally:
        with signals_held():
            node.down()


def in_parallel(*jobs: Callable[[], object]) -> list[object]:
    """Run each job on a thread of its own; their results in order, or the first error raised."""
    results: list[object] = [None] * len(jobs)
    errors: list[BaseException] = []

    def run(index: int, job: Callable[[], object]) -> None:
        try:
            results[index] = job()
        except BaseException as exc:  # handed to the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, j), daemon=True) for i, j in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def kubectl_latency(nodes: Sequence[LabNode], runs: int) -> list[list[float]]:
    """Seconds of ``kubectl get pods`` against each node, alternating, ``runs`` each."""
    configs = [n.require_state().kubeconfig for n in nodes]
    samples: list[list[float]] = [[] for _ in nodes]
    with tempfile.TemporaryDirectory(prefix="kubectl-home-") as home:
        for i in range(runs + 1):
            for index, config in enumerate(configs):
                env = {**os.environ, "KUBECONFIG": config, "HOME": home}
                t0 = time.monotonic()
                done = subprocess.run(
                    ["kubectl", "get", "pods", "-A"],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    env=env,
                    check=False,
                )
                elapsed = time.monotonic() - t0
                if done.returncode != 0:
                    raise RuntimeError(f"kubectl get pods failed: {done.stderr.strip()[-300:]}")
                if i:  # the first run fills kubectl's discovery cache
                    samples[index].append(elapsed)
    return samples


def run(args: argparse.Namespace) -> Outcome:
    """Both nodes up, the scenarios on both, the report."""
    outcome = Outcome()
    print(f"bench_fidelity on {machine()}")
    chosen = [s for s in fidelity.SCENARIOS if not args.scenario or s.name in args.scenario]
    with ExitStack() as stack:
        base = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fid-", dir="/tmp")))
        lab, real = in_parallel(
            lambda: stack.enter_context(node_up("lab", base / "lab", real=False)),
            lambda: stack.enter_context(node_up("real", base / "real", real=True)),
        )
        assert isinstance(lab, LabNode)
        assert isinstance(real, LabNode)
        longest = max(s.watch_seconds for s in chosen)
        log(f"both nodes up; {len(chosen)} scenarios, the longest {longest:.0f}s")
        seen_lab, seen_real = in_parallel(
            lambda: fidelity.observe(lab, chosen, progress=log),
            lambda: fidelity.observe(real, chosen, progress=log),
        )
        assert isinstance(seen_lab, dict)
        assert isinstance(seen_real, dict)
        differences = fidelity.compare(seen_lab, seen_real)

        section("Differences, the stand-in lab beside the real node")
        for difference in differences:
            print(difference.render())
        section("Observables compared and differing, per scenario")
        rows = []
        for name, (compared, differing) in sorted(
            fidelity.counts(seen_lab, seen_real, differences).items()
        ):
            unexplained = sum(1 for d in fidelity.unexplained(differences) if d.scenario == name)
            rows.append((name, compared, differing, unexplained))
        print(format_table(["scenario", "observables", "differ", "unexplained"], rows))
        left = fidelity.unexplained(differences)
        outcome.info("observables compared", str(sum(r[1] for r in rows)))
        outcome.info("observables differing", str(len(differences)))
        outcome.target(
            "differences not explained (lab.fidelity.KNOWN)", str(len(left)), "0", not left
        )

        section(f"kubectl get pods -A, {args.kubectl_runs} runs on each, alternating")
        on_lab, on_real = kubectl_latency([lab, real], args.kubectl_runs)
        print(
            format_table(
                ["API server", *LATENCY_HEADER],
                [("stand-in lab", *latency_cells(on_lab)), ("real", *latency_cells(on_real))],
            )
        )
        print(f"\nreal / lab, p50: {ratio(median(on_real), median(on_lab))}")
        outcome.info("kubectl get pods p50, stand-in lab", f"{median(on_lab) * 1000:.0f} ms")
        outcome.info(
            "kubectl get pods p50, real",
            f"{median(on_real) * 1000:.0f} ms ({ratio(median(on_real), median(on_lab))} lab)",
        )
        outcome.info(
            "kubectl get pods p90, real / lab",
            ratio(percentile(on_real, 90), percentile(on_lab, 90)),
        )
    return outcome


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(prog="python -m bench.bench_fidelity", description=__doc__)
    parser.add_argument(
        "--scenario",
        action="append",
        choices=[s.name for s in fidelity.SCENARIOS],
        help="run only this scenario (repeatable); all by default",
    )
    parser.add_argument("--kubectl-runs", type=int, default=20, help="kubectl get pods per node")
    args = parser.parse_args(argv)
    if args.kubectl_runs < 2:
        parser.error("--kubectl-runs must be at least 2")
    return run_benchmark(
        "bench_fidelity", lambda: run(args), cannot_run=cannot_run(), errors=LAB_ERRORS
    )


if __name__ == "__main__":
    sys.exit(main())
