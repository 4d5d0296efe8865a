"""The real node beside the lab node: start-up, pod start and time to recover, in one run.

Run as root from the repository root, with the upstream binaries built
(``scripts/upstream/build.sh kubernetes etcd``, cached by version)::

    python -m bench.bench_real [--pods 10] [--kills 3]

1. ``lab up --real`` twice on fresh lab directories (``LabNode``, the same
   as ``python -m lab up --real``), each until a pod can be made (the
   namespace's ServiceAccount and root CA exist): *cold*, with the lab
   node's images built into an empty cache and the machine's page cache
   dropped first (the binaries are read from disk again), and *warm*,
   right after, with everything cached. The agent's image tar comes from
   its cache both times (its first build is ``build.sh``'s kind of cost,
   once per machine). Each part of the start is timed from its progress
   line.
2. On the warm real node, then on the stand-in lab node (``lab up``): pod
   start, apply to ``Running 2/2`` as the API server reports it, for one
   two-container manifest (nginx and a busybox sidecar), ``--pods`` pods one
   after another, each deleted and gone before the next.
3. On each: time to recover, by the agent's kill-and-watch, for the pod the
   real-cluster tests kill (``tests/fixtures/real/heal-target.yaml``: an
   init container, nginx and a sidecar with readiness probes): ``--kills``
   container kills (the sidecar) and as many sandbox kills (the pause
   process), each on a fresh pod, so no crash back-off carries over. Each
   run must heal with every phase of its kind.

The real node's and the lab node's figures are printed side by side with
their ratios. Exit status: 0 when every target is met, 1 when one is missed,
2 when a check failed or a node could not run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from agent.services.heal import CONTAINER_PHASES, SANDBOX_PHASES
from bench._harness import (
    Outcome,
    format_table,
    free_port,
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
from lab.node import LabNode, UpReport
from lab.upstream import realnode
from lab.upstream.cluster import NotBuilt

REPO = Path(__file__).resolve().parent.parent
HEAL_TARGET = REPO / "tests" / "fixtures" / "real" / "heal-target.yaml"
# From the issue of the real node: a cached start adds at most 5 minutes to a test run.
TARGET_WARM_START = 300.0

# One manifest for both kubelets. The sidecar leaves at SIGTERM and the grace
# is short, so a deletion does not hold the next pod up.
TWO_CONTAINERS = """\
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: nginx
    image: nginx
  - name: sidecar
    image: busybox
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
"""


def real_problem() -> str | None:
    """Why this machine cannot run the real node, or None."""
    if os.geteuid() != 0:
        return "the real node starts containerd, a kubelet and a pod network: run as root"
    for tool in ("containerd", "runc", "ctr", "kubectl", "buildah"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/install-deps.sh installs it)"
    try:
        realnode.binaries()
    except NotBuilt as exc:
        return str(exc)
    return None


# --------------------------------------------------------------------- start-up


@dataclass
class Start:
    """One ``lab up``: its total, its parts, and the wait until a pod can be made."""

    label: str
    up_seconds: float
    ready_seconds: float
    down_seconds: float = 0.0
    milestones: list[tuple[float, str]] = field(default_factory=list)
    report: UpReport | None = None


def drop_page_cache() -> None:
    """Write back and drop the page cache, so binaries and images are read from disk again."""
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


@contextmanager
def node_up(
    label: str,
    lab_dir: Path,
    *,
    real: bool,
    image_cache: Path | None,
    starts: list[Start],
) -> Iterator[LabNode]:
    """``lab up`` (timed, every progress line stamped), yield the node, ``lab down`` (timed)."""
    t0 = time.monotonic()
    milestones: list[tuple[float, str]] = []

    def progress(message: str) -> None:
        milestones.append((time.monotonic() - t0, message))
        log(f"{label}: {message}")

    node = LabNode(lab_dir, port=free_port(), image_cache=image_cache, progress=progress, real=real)
    try:
        report = node.up()
        up_seconds = time.monotonic() - t0
        if real:
            state = node.require_state()
            wait_until(
                "a pod can be made (ServiceAccount, root CA)",
                lambda: realnode.pods_can_be_made(state),
                60,
            )
        start = Start(
            label, up_seconds, time.monotonic() - t0, milestones=milestones, report=report
        )
        starts.append(start)
        log(f"{label}: up in {up_seconds:.1f}s, pods can be made at {start.ready_seconds:.1f}s")
        yield node
    finally:
        with signals_held():
            t_down = time.monotonic()
            node.down()
            if starts and starts[-1].label == label:
                starts[-1].down_seconds = time.monotonic() - t_down


# --------------------------------------------------------------------- pods


def wait_gone(node: LabNode, name: str, timeout: float = 90.0) -> None:
    """Until the API server no longer holds the pod."""
    wait_until(f"pod {name} gone", lambda: node.pod(name) is None, timeout, interval=0.1)


def pod_starts(node: LabNode, count: int, label: str) -> list[float]:
    """Apply to Running 2/2, one pod after another, each deleted and gone before the next."""
    latencies = []
    for i in range(count):
        name = f"bench-start-{i}"
        t0 = time.monotonic()
        node.apply(TWO_CONTAINERS.format(name=name), source=name)
        node.wait_for_status(name, "Running", "2/2", timeout=90, interval=0.01)
        latencies.append(time.monotonic() - t0)
        log(f"{label}: {name} Running 2/2 in {latencies[-1]:.2f}s")
        node.delete(name)
        wait_gone(node, name)
    return latencies


# --------------------------------------------------------------------- kill-and-watch


@dataclass(frozen=True)
class Recovery:
    """One kill-and-watch run as the agent reported it."""

    kind: str
    state: str
    seconds: float | None
    expected_delay: float | None
    phases: tuple[str, ...]


def agent_client(node: LabNode) -> httpx.Client:
    """The agent's HTTP API as the node's status names it (with the operator's token if any)."""
    status = node.status()
    headers = {"Accept": "application/json"}
    token_file = status.get("agent_token_file")
    if token_file:
        headers["Authorization"] = "Bearer " + Path(token_file).read_text().strip()
    # The port-forwarded agent serves TLS with a certificate it made at start;
    # it is reached on loopback only.
    return httpx.Client(base_url=status["agent_url"], headers=headers, timeout=15.0, verify=False)


def heal_target(name: str) -> str:
    """The real-cluster tests' kill target, named ``name``."""
    manifest = yaml.safe_load(HEAL_TARGET.read_text())
    manifest["metadata"]["name"] = name
    return yaml.safe_dump(manifest)


def ready_on_both(node: LabNode, agent: httpx.Client, name: str) -> bool:
    """The API server and the agent both show the pod Running 2/2."""
    row = next((r for r in node.pods() if r.name == name and r.namespace == "default"), None)
    if row is None or (row.status, row.ready) != ("Running", "2/2"):
        return False
    seen = agent.get(f"/v1/pods/default/{name}")
    return seen.status_code == 200 and (seen.json()["status"], seen.json()["ready"]) == (
        "Running",
        "2/2",
    )


def recover_once(
    node: LabNode, agent: httpx.Client, name: str, body: dict[str, Any], label: str
) -> Recovery:
    """A fresh heal target, one kill-and-watch run followed to its end, the pod removed."""
    node.apply(heal_target(name), source=name)
    try:
        wait_until(
            f"{name} Running 2/2 for the API server and the agent",
            lambda: ready_on_both(node, agent, name),
            120,
            interval=0.1,
        )
        accepted = agent.post(
            f"/v1/pods/default/{name}/kill-and-watch", json={**body, "timeout_seconds": 120}
        )
        if accepted.status_code != 202:
            raise RuntimeError(f"kill-and-watch refused: {accepted.status_code} {accepted.text}")
        run_id = accepted.json()["id"]

        def finished() -> dict[str, Any] | None:
            run: dict[str, Any] = agent.get(f"/v1/heal/runs/{run_id}").json()
            return run if run["state"] != "running" else None

        run, _ = wait_until(f"run {run_id} finished", finished, 140, interval=0.25)
    finally:
        node.delete(name)
        wait_gone(node, name)
    recovery = Recovery(
        kind=run["target"]["kind"],
        state=run["state"],
        seconds=run["time_to_recover_seconds"],
        expected_delay=run["plan"].get("expected_delay_seconds"),
        phases=tuple(p["name"] for p in run["phases"]),
    )
    log(f"{label}: {recovery.kind} kill of {name}: {recovery.state} in {recovery.seconds}s")
    return recovery


def recoveries(node: LabNode, kills: int, label: str) -> list[Recovery]:
    """``kills`` container kills and as many sandbox kills, each on a fresh pod."""
    found = []
    with agent_client(node) as agent:
        for i in range(kills):
            found.append(recover_once(node, agent, f"heal-c-{i}", {"container": "sidecar"}, label))
            found.append(recover_once(node, agent, f"heal-s-{i}", {"sandbox": True}, label))
    return found


# --------------------------------------------------------------------- the run


@dataclass
class Side:
    """What one node measured."""

    starts: list[float] = field(default_factory=list)
    runs: list[Recovery] = field(default_factory=list)

    def recovered(self, kind: str) -> list[float]:
        return [r.seconds for r in self.runs if r.kind == kind and r.seconds is not None]


def measure(node: LabNode, args: argparse.Namespace, label: str) -> Side:
    """Pod starts, then the kills, on one node."""
    side = Side()
    side.starts = pod_starts(node, args.pods, label)
    side.runs = recoveries(node, args.kills, label)
    return side


def run(args: argparse.Namespace) -> Outcome:
    """Cold and warm real starts, then each node's pod starts and recoveries; the report."""
    outcome = Outcome()
    print(f"bench_real on {machine()}")
    starts: list[Start] = []
    with tempfile.TemporaryDirectory(prefix="plreal-", dir="/tmp") as tmp_name:
        tmp = Path(tmp_name)
        empty_cache = tmp / "images"
        if not args.no_drop_caches:
            drop_page_cache()
        with node_up("real cold", tmp / "cold", real=True, image_cache=empty_cache, starts=starts):
            pass
        with node_up("real warm", tmp / "warm", real=True, image_cache=None, starts=starts) as node:
            real = measure(node, args, "real")
        with node_up("lab", tmp / "lab", real=False, image_cache=None, starts=starts) as node:
            lab = measure(node, args, "lab")

    report_starts(starts, outcome)
    report_pods(real, lab, args, outcome)
    report_recovery(real, lab, args, outcome)
    return outcome


def report_starts(starts: Sequence[Start], outcome: Outcome) -> None:
    section("Start-up: lab up --real cold and warm, lab up (upstream binaries cached)")
    print(
        format_table(
            ["start", "lab up", "until pods can be made", "lab down"],
            [
                (
                    s.label,
                    f"{s.up_seconds:.1f} s",
                    f"{s.ready_seconds:.1f} s",
                    f"{s.down_seconds:.1f} s",
                )
                for s in starts
            ],
        )
    )
    cold, warm = starts[0], starts[1]
    print(f"\ncold / warm: {ratio(cold.ready_seconds, warm.ready_seconds)}")
    for s in starts:
        print(f"\n{s.label}, each progress line at (seconds since the start):")
        print(format_table(["at", "progress"], [(f"{at:6.1f}", m[:110]) for at, m in s.milestones]))
    outcome.info("real cold start (until pods can be made)", f"{cold.ready_seconds:.1f} s")
    outcome.target(
        "real warm start (until pods can be made)",
        f"{warm.ready_seconds:.1f} s",
        f"<= {TARGET_WARM_START:.0f} s",
        warm.ready_seconds <= TARGET_WARM_START,
    )
    outcome.info("lab start (lab up)", f"{starts[2].up_seconds:.1f} s")


def report_pods(real: Side, lab: Side, args: argparse.Namespace, outcome: Outcome) -> None:
    section(f"Pod start, apply -> Running 2/2 (nginx + busybox), {args.pods} pods on each")
    rows = []
    for what, pick in (
        ("p50", lambda v: percentile(v, 50)),
        ("p90", lambda v: percentile(v, 90)),
        ("min", min),
        ("max", max),
    ):
        r, k = pick(real.starts), pick(lab.starts)
        rows.append((what, f"{r:.3f} s", f"{k:.3f} s", ratio(r, k)))
    print(format_table(["", "real kubelet", "lab kubelet", "real / lab"], rows))
    for label, side in (("real", real), ("lab", lab)):
        outcome.check(
            f"{label}: {args.pods} pods reached Running 2/2",
            len(side.starts) == args.pods,
            f"{len(side.starts)} did",
        )
    r50, k50 = percentile(real.starts, 50), percentile(lab.starts, 50)
    outcome.info("pod start p50, real kubelet", f"{r50:.3f} s")
    outcome.info("pod start p50, lab kubelet", f"{k50:.3f} s ({ratio(r50, k50)} real / lab)")


def report_recovery(real: Side, lab: Side, args: argparse.Namespace, outcome: Outcome) -> None:
    section(f"Time to recover (kill-and-watch, signal to healed), {args.kills} kills of each kind")
    rows = []
    for kind, phases in (("container", CONTAINER_PHASES), ("sandbox", SANDBOX_PHASES)):
        r, k = real.recovered(kind), lab.recovered(kind)
        if r and k:
            rows.append(
                (
                    kind,
                    f"{median(r):.2f} s",
                    f"{median(k):.2f} s",
                    ratio(median(r), median(k)),
                    " ".join(f"{v:.2f}" for v in r),
                    " ".join(f"{v:.2f}" for v in k),
                )
            )
            outcome.info(f"time to recover, {kind}, real median", f"{median(r):.2f} s")
            outcome.info(
                f"time to recover, {kind}, lab median",
                f"{median(k):.2f} s ({ratio(median(r), median(k))} real / lab)",
            )
        for label, side in (("real", real), ("lab", lab)):
            runs = [x for x in side.runs if x.kind == kind]
            bad = [x for x in runs if x.state != "healed" or set(x.phases) != set(phases)]
            outcome.check(
                f"{label}: {len(runs)} {kind} kills healed with every phase",
                len(runs) == args.kills and not bad,
                f"{len(runs)} runs; not healed or phases missing: {bad}",
            )
    print(
        format_table(
            ["kill", "real median", "lab median", "real / lab", "real runs (s)", "lab runs (s)"],
            rows,
        )
    )
    delays = {
        label: sorted({x.expected_delay for x in side.runs if x.expected_delay is not None})
        for label, side in (("real", real), ("lab", lab))
    }
    print(f"\nthe plans' expected delays (crash back-off before the restart): {delays}")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(prog="python -m bench.bench_real", description=__doc__)
    parser.add_argument("--pods", type=int, default=10, help="pods for the start latency")
    parser.add_argument("--kills", type=int, default=3, help="kills of each kind on each node")
    parser.add_argument(
        "--no-drop-caches",
        action="store_true",
        help="leave the page cache alone before the cold start",
    )
    args = parser.parse_args(argv)
    if args.pods < 2 or args.kills < 1:
        parser.error("--pods must be at least 2 and --kills at least 1")
    return run_benchmark(
        "bench_real", lambda: run(args), cannot_run=real_problem(), errors=LAB_ERRORS
    )


if __name__ == "__main__":
    sys.exit(main())
