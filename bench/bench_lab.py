"""How fast the lab node comes up and starts pods.

1. ``lab up`` on a fresh lab directory, then every exercise applied and
   waited for until it shows its expected STATUS/READY: the total and its
   parts (images, containerd, API server + kubelet + agent, pods).
2. Pod start latency, apply to ``Running 2/2`` as the API server reports it,
   for a two-container pod (nginx + a busybox sidecar), 10 pods one after
   another: p50 and p90.

Figures and targets are printed; the exit status is 0 when every target
is met, 1 when one is missed, 2 when a check failed or the lab could not run.

    python -m bench.bench_lab [--pods 10] [--port 18470] [--cold-images]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench._harness import (
    Outcome,
    format_table,
    free_port,
    log,
    percentile,
    run_benchmark,
    section,
)
from bench._lab import LAB_ERRORS, lab_problem
from lab.errors import LabError
from lab.exercises import EXERCISES
from lab.node import LabNode

TARGET_POD_START_P50 = 1.0
# Up to every exercise at its status: images cached, containerd, the three
# processes, twelve pods including two that must crash twice.
TARGET_UP_TO_SETTLED = 30.0

TWO_CONTAINERS = """\
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  containers:
  - name: nginx
    image: nginx
  - name: sidecar
    image: busybox
    command: ["sh", "-c", "while true; do sleep 5; done"]
"""


def settle_exercises(lab: LabNode, timeout: float = 120.0) -> dict[str, float]:
    """Apply every exercise; seconds until each showed its expected STATUS and READY."""
    start = time.monotonic()
    for e in EXERCISES:
        lab.apply(e.text(), source=e.path.name)
    pending = {e.name: e for e in EXERCISES}
    reached: dict[str, float] = {}
    while pending:
        for row in lab.pods():
            want = pending.get(row.name)
            if want is not None and (row.status, row.ready) == (want.status, want.ready):
                reached[row.name] = time.monotonic() - start
                del pending[row.name]
        if pending and time.monotonic() - start > timeout:
            raise LabError(f"exercises not settled after {timeout:.0f}s: {sorted(pending)}")
        time.sleep(0.02)
    return reached


def pod_start_latencies(lab: LabNode, count: int) -> list[float]:
    """Apply to Running 2/2, one pod after another, each deleted before the next."""
    latencies = []
    for i in range(count):
        name = f"bench-start-{i}"
        t0 = time.monotonic()
        lab.apply(TWO_CONTAINERS.format(name=name), source=name)
        lab.wait_for_status(name, "Running", "2/2", timeout=30, interval=0.01)
        latencies.append(time.monotonic() - t0)
        lab.delete(name)
    return latencies


def run(args: argparse.Namespace) -> Outcome:
    """Up, every exercise settled, the pod starts, down; then the report."""
    outcome = Outcome()
    with tempfile.TemporaryDirectory(prefix="plbench-") as tmp:
        lab = LabNode(
            Path(tmp) / "lab",
            port=args.port or free_port(),
            image_cache=Path(tmp) / "images" if args.cold_images else None,
            progress=log,
        )
        t0 = time.monotonic()
        report = lab.up()
        try:
            reached = settle_exercises(lab)
            total = time.monotonic() - t0
            latencies = pod_start_latencies(lab, args.pods)
        finally:
            t_down = time.monotonic()
            lab.down()
            down_seconds = time.monotonic() - t_down
    outcome.check(
        f"every exercise reached its expected STATUS and READY ({len(EXERCISES)})",
        set(reached) == {e.name for e in EXERCISES},
        f"{sorted({e.name for e in EXERCISES} - set(reached))} did not",
    )
    outcome.check(
        f"{args.pods} two-container pods reached Running 2/2",
        len(latencies) == args.pods,
        f"{len(latencies)} did",
    )

    p50, p90 = percentile(latencies, 50), percentile(latencies, 90)
    cached = all(c for _, c in report.images)
    last = max(reached, key=lambda n: reached[n])
    section("lab up to every exercise at its expected status (fresh lab directory)")
    print(
        format_table(
            ["part", "seconds", ""],
            [
                ("images", f"{report.timings['images']:.2f}", "cached" if cached else "built"),
                ("containerd", f"{report.timings['containerd']:.2f}", "start + image import"),
                (
                    "API server, kubelet, agent",
                    f"{report.timings['control_plane']:.2f}",
                    "until the agent is ready",
                ),
                (
                    f"pods ({len(reached)} exercises)",
                    f"{max(reached.values()):.2f}",
                    f"last to settle: {last}",
                ),
                ("total", f"{total:.2f}", ""),
                ("down", f"{down_seconds:.2f}", ""),
            ],
        )
    )
    section(f"pod start, apply -> Running 2/2 (nginx + busybox), {len(latencies)} pods")
    print(
        format_table(
            ["p50", "p90", "min", "max"],
            [tuple(f"{v:.3f} s" for v in (p50, p90, min(latencies), max(latencies)))],
        )
    )
    outcome.target(
        "lab up to every exercise settled",
        f"{total:.1f} s",
        f"<= {TARGET_UP_TO_SETTLED:.0f} s",
        total <= TARGET_UP_TO_SETTLED,
    )
    outcome.target(
        "pod start p50",
        f"{p50:.3f} s",
        f"<= {TARGET_POD_START_P50:.1f} s",
        p50 <= TARGET_POD_START_P50,
    )
    return outcome


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(prog="python -m bench.bench_lab", description=__doc__)
    parser.add_argument("--pods", type=int, default=10, help="pods for the start latency")
    parser.add_argument("--port", type=int, default=0, help="agent port (default: a free one)")
    parser.add_argument(
        "--cold-images", action="store_true", help="build the images into an empty cache"
    )
    args = parser.parse_args(argv)
    if args.pods < 2:
        parser.error("--pods must be at least 2")
    return run_benchmark(
        "bench_lab", lambda: run(args), cannot_run=lab_problem(), errors=LAB_ERRORS
    )


if __name__ == "__main__":
    sys.exit(main())
