"""How fast the lab node comes up and starts pods.

1. ``lab up`` on a fresh lab directory, then every exercise applied and
   waited for until it shows its expected STATUS/READY: the total and its
   parts (images, containerd, API server + kubelet + agent, pods).
2. Pod start latency, apply to ``Running 2/2`` as the API server reports it,
   for a two-container pod (nginx + a busybox sidecar), 10 pods one after
   another: p50 and p90.

Figures and targets are printed; the exit code is 1 when a target is
missed, 2 when the lab could not run.

    python -m bench.bench_lab [--pods 10] [--port 18470] [--cold-images]
"""

from __future__ import annotations

import argparse
import math
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

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


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def row(label: str, seconds: float, remark: str) -> None:
    print(f"  {label:<28} {seconds:6.2f} s  {remark}".rstrip())


def settle_exercises(lab: LabNode, timeout: float = 120.0) -> dict[str, float]:
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
    latencies = []
    for i in range(count):
        name = f"bench-start-{i}"
        t0 = time.monotonic()
        lab.apply(TWO_CONTAINERS.format(name=name), source=name)
        lab.wait_for_status(name, "Running", "2/2", timeout=30, interval=0.01)
        latencies.append(time.monotonic() - t0)
        lab.delete(name)
    return latencies


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_lab", description=__doc__)
    parser.add_argument("--pods", type=int, default=10, help="pods for the start latency")
    parser.add_argument("--port", type=int, default=0, help="agent port (default: a free one)")
    parser.add_argument(
        "--cold-images", action="store_true", help="build the images into an empty cache"
    )
    args = parser.parse_args(argv)
    if args.pods < 2:
        parser.error("--pods must be at least 2")

    with tempfile.TemporaryDirectory(prefix="plbench-") as tmp:
        lab = LabNode(
            Path(tmp) / "lab",
            port=args.port or free_port(),
            image_cache=Path(tmp) / "images" if args.cold_images else None,
            progress=log,
        )
        try:
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
        except LabError as exc:
            print(f"bench_lab: {exc}", file=sys.stderr)
            return 2

    pods_seconds = max(reached.values())
    p50, p90 = percentile(latencies, 50), percentile(latencies, 90)
    cached = all(c for _, c in report.images)
    last = max(reached, key=lambda n: reached[n])
    print("lab up to every exercise at its expected status (fresh lab directory)")
    row("images", report.timings["images"], "cached" if cached else "built")
    row("containerd", report.timings["containerd"], "start + image import")
    row("API server, kubelet, agent", report.timings["control_plane"], "until the agent is ready")
    row(f"pods ({len(reached)} exercises)", pods_seconds, f"last to settle: {last}")
    row("total", total, f"target <= {TARGET_UP_TO_SETTLED:.0f} s")
    row("down", down_seconds, "")
    print(f"pod start, apply -> Running 2/2 (nginx + busybox), {len(latencies)} pods")
    print(f"  p50 {p50:6.3f} s  target <= {TARGET_POD_START_P50:.1f} s")
    print(f"  p90 {p90:6.3f} s")
    print(f"  min {min(latencies):6.3f} s  max {max(latencies):6.3f} s")

    missed = []
    if total > TARGET_UP_TO_SETTLED:
        missed.append(f"up to settled {total:.1f} s > {TARGET_UP_TO_SETTLED:.0f} s")
    if p50 > TARGET_POD_START_P50:
        missed.append(f"pod start p50 {p50:.3f} s > {TARGET_POD_START_P50:.1f} s")
    if missed:
        print("MISSED: " + "; ".join(missed))
        return 1
    print("all targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
