"""Exit detection and recovery over 50 kills, through the agent's kill-and-watch API.

Run as root from the repository root::

    python -m bench.bench_heal [--kills 50] [--victims 5]

A private containerd, the lab's API server and the lab kubelet (child
processes; kubelet durations scaled by ``--time-scale`` 0.01 so its restart
back-off stays under a fraction of a second, while its relist keeps the
kubelet's 1 s period) run a few pods in namespace ``bench``, one busybox
container (``sleep 3600``) each. The agent runs as a subprocess with
``--enable-kill --kill-namespaces bench``. The pods are killed in turn, one
run at a time, each with ``POST /v1/pods/bench/{pod}/kill-and-watch``
(SIGKILL to the container's process), after a random pause so kills fall
at random moments; each run is read back from ``GET /v1/heal/runs/{id}``.

For each kill, measured from the moment the agent sent the signal:

* "process gone": the agent's pidfd of the process became readable;
* "runtime's exit time": the exit time the runtime itself reports;
* "agent saw runtime exited": when the agent's relist saw the container exited;
* "1 s relist poll": a poller in this process calls ``ListContainers`` every
  second, on its own schedule, as kubelet's generic PLEG relists; the first
  poll that shows the container exited;
* time to recover: signal to the API showing the new container ready (the
  run's ``time_to_recover_seconds``).

Every run is checked: healed, every phase present, exit code 137, a new
container with the next attempt, the old PID gone, and no observer seeing the
exit before the runtime says it happened.

Exit status: 0 when every target is met, 1 when a target is missed, 2 when a
check failed (a wrong answer) or the lab could not run.
"""

from __future__ import annotations

import argparse
import functools
import random
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import grpc
import psutil

from bench._harness import (
    LATENCY_HEADER,
    Outcome,
    format_table,
    latency_cells,
    log,
    machine,
    ms,
    percentile,
    ratio,
    run_benchmark,
    section,
    stopped_on_exit,
    wait_until,
)
from bench._lab import (
    LAB_ERRORS,
    NODE,
    AgentProcess,
    ApiServerProcess,
    KubeletProcess,
    Lab,
    lab_problem,
    pods_removed_on_exit,
)
from cri_proto import api_pb2, api_pb2_grpc

NAMESPACE = "bench"
TARGET_GONE_P50 = 0.050
POLL_PERIOD = 1.0
KUBELET_SYNC_PERIOD = 1.0
CONTAINER_PHASES = {
    "signal_sent",
    "process_gone",
    "runtime_exited",
    "api_terminated",
    "runtime_recreated",
    "runtime_started",
    "api_running",
    "api_ready",
}
# Two clocks read the same host time; allow for rounding of the reported values.
CLOCK_SLACK = 0.002


# --------------------------------------------------------------------- the 1 s poller


class RelistPoller:
    """``ListContainers`` every ``period`` seconds on a fixed schedule, as kubelet's PLEG.

    Records, per container ID, the wall-clock time of the first poll whose
    answer showed it exited (or gone, having been seen before).
    """

    def __init__(self, endpoint: str, period: float) -> None:
        self.period = period
        self._channel = grpc.insecure_channel(endpoint)
        self._stub = api_pb2_grpc.RuntimeServiceStub(self._channel)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.first_exited: dict[str, float] = {}
        self.seen_running: set[str] = set()
        self.polls = 0
        self.poll_seconds: list[float] = []
        self.errors = 0
        self._thread = threading.Thread(target=self._loop, name="relist-poller", daemon=True)

    def start(self) -> RelistPoller:
        """Start polling in a thread of its own."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop polling and close the channel."""
        self._stop.set()
        self._thread.join(5)
        self._channel.close()

    def exited_at(self, container_id: str) -> float | None:
        """When a poll first showed the container exited (wall clock), if one has."""
        with self._lock:
            return self.first_exited.get(container_id)

    def _loop(self) -> None:
        start = time.monotonic()
        tick = 0
        known: set[str] = set()
        while not self._stop.is_set():
            tick += 1
            delay = start + tick * self.period - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            t0 = time.perf_counter()
            try:
                listed = self._stub.ListContainers(api_pb2.ListContainersRequest(), timeout=2)
            except grpc.RpcError:
                self.errors += 1
                continue
            seen = time.time()
            self.poll_seconds.append(time.perf_counter() - t0)
            self.polls += 1
            present = set()
            with self._lock:
                for c in listed.containers:
                    present.add(c.id)
                    if c.state == api_pb2.CONTAINER_RUNNING:
                        self.seen_running.add(c.id)
                    elif c.state == api_pb2.CONTAINER_EXITED:
                        self.first_exited.setdefault(c.id, seen)
                for gone in known - present:
                    self.first_exited.setdefault(gone, seen)
            known = present


# --------------------------------------------------------------------- runs


@dataclass(frozen=True)
class Kill:
    """One measured kill: the target, and each observer's time since the signal."""

    pod: str
    run_id: str
    container_id: str
    pid: int
    gone: float  # since the signal, seconds
    runtime_exit: float
    agent_saw_exit: float
    poll_saw_exit: float | None
    recover: float | None
    state: str


def phase(run: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The named phase of a heal run, if it has one."""
    return next((p for p in run["phases"] if p["name"] == name), None)


def manifest(name: str) -> dict[str, Any]:
    """A pod with one busybox container that sleeps."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": "victim"}},
        "spec": {
            "nodeName": NODE,
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "app", "image": "busybox", "command": ["sleep", "3600"]}],
        },
    }


def ready_to_kill(agent: AgentProcess, pod: str) -> dict[str, Any] | None:
    """The pod's view once it runs, is ready in the API, and its app container has a PID."""
    response = agent.http.get(f"/v1/pods/{NAMESPACE}/{pod}")
    if response.status_code != 200:
        return None
    view: dict[str, Any] = response.json()
    app = next((c for c in view["containers"] if c["name"] == "app"), None)
    if view["status"] != "Running" or view["ready"] != "1/1" or app is None or not app["pid"]:
        return None
    return view


def kill_once(
    agent: AgentProcess, poller: RelistPoller, pod: str, outcome: Outcome, n: int
) -> Kill | None:
    """Kill the pod's app container through kill-and-watch; the run read back and checked."""
    view, _ = wait_until(f"{pod} running and ready", lambda: ready_to_kill(agent, pod), 60, 0.05)
    app = next(c for c in view["containers"] if c["name"] == "app")
    response = agent.http.post(
        f"/v1/pods/{NAMESPACE}/{pod}/kill-and-watch",
        json={"container": "app", "timeout_seconds": 60},
    )
    if not outcome.check(
        f"kill {n}: accepted (202)", response.status_code == 202, response.text[:300]
    ):
        return None
    run_id = response.json()["id"]

    def done() -> dict[str, Any] | None:
        run: dict[str, Any] = agent.http.get(f"/v1/heal/runs/{run_id}").json()
        return run if run["state"] != "running" else None

    run, _ = wait_until(f"run {run_id} finished", done, 75, 0.1)
    target = run["target"]
    names = {p["name"] for p in run["phases"]}
    ok = outcome.check(
        f"kill {n}: run {run_id} healed with every phase",
        run["state"] == "healed" and names >= CONTAINER_PHASES,
        f"state {run['state']}, verdict {run['verdict']!r}, missing "
        f"{sorted(CONTAINER_PHASES - names)}",
    )
    outcome.check(
        f"kill {n}: the target is the container the agent listed",
        target["container_id"] == app["id"] and target["pid"] == app["pid"],
        f"{target} vs {app['id'][:13]} pid {app['pid']}",
    )
    if not ok:
        return None
    signal_at = datetime.fromisoformat(run["phases"][0]["at"])
    gone = phase(run, "process_gone")
    exited = phase(run, "runtime_exited")
    started = phase(run, "runtime_started")
    recreated = phase(run, "runtime_recreated")
    assert gone is not None
    assert exited is not None
    assert started is not None
    assert recreated is not None
    saw = (datetime.fromisoformat(exited["detail"]["seen_at"]) - signal_at).total_seconds()
    outcome.check(
        f"kill {n}: the runtime reports exit code 137",
        exited["detail"].get("exit_code") == 137,
        f"{exited['detail']}",
    )
    outcome.check(
        f"kill {n}: a new container with the next attempt",
        started["detail"].get("attempt") == target["attempt"] + 1
        and recreated["detail"].get("container_id") != target["container_id"],
        f"{recreated['detail']} / {started['detail']} after attempt {target['attempt']}",
    )
    outcome.check(
        f"kill {n}: the order of times holds (signal <= exit <= seen)",
        gone["since_signal_seconds"] >= 0
        and exited["since_signal_seconds"] >= -CLOCK_SLACK
        and saw >= exited["since_signal_seconds"] - CLOCK_SLACK,
        f"gone {gone['since_signal_seconds']}, exit {exited['since_signal_seconds']}, "
        f"seen {saw:.4f}",
    )
    pid = int(target["pid"])
    try:
        same = psutil.Process(pid).create_time() < signal_at.timestamp()
    except psutil.NoSuchProcess:
        same = False
    outcome.check(f"kill {n}: PID {pid} is gone", not same, "the old process still exists")
    # The poller's next poll has to come before we read what it saw.
    poll_at = None
    deadline = time.monotonic() + POLL_PERIOD * 2.5
    while poll_at is None and time.monotonic() < deadline:
        poll_at = poller.exited_at(target["container_id"])
        if poll_at is None:
            time.sleep(0.05)
    poll = poll_at - signal_at.timestamp() if poll_at is not None else None
    outcome.check(
        f"kill {n}: the {POLL_PERIOD:g} s poller saw the container exit, after the runtime's "
        "exit time",
        poll is not None and poll >= exited["since_signal_seconds"] - CLOCK_SLACK,
        f"poll {poll}, exit {exited['since_signal_seconds']}",
    )
    return Kill(
        pod=pod,
        run_id=run_id,
        container_id=target["container_id"],
        pid=pid,
        gone=gone["since_signal_seconds"],
        runtime_exit=exited["since_signal_seconds"],
        agent_saw_exit=saw,
        poll_saw_exit=poll,
        recover=run["time_to_recover_seconds"],
        state=run["state"],
    )


# --------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> Outcome:
    """The lab up, the kills one after another, each checked; then the report."""
    outcome = Outcome()
    rng = random.Random(args.seed)
    victims = [f"victim-{i}" for i in range(args.victims)]
    print(
        f"podlens heal benchmark: {args.kills} SIGKILLs of a busybox container's process "
        f"through kill-and-watch, {len(victims)} pods in turn, lab kubelet time scale "
        f"{args.time_scale:g} (sync period {KUBELET_SYNC_PERIOD:g} s); real containerd; "
        f"{machine()}"
    )
    with (
        Lab(workers=1) as lab,
        pods_removed_on_exit(lab.endpoint),
        stopped_on_exit() as children,
    ):
        api = ApiServerProcess(lab.base, bookmark_interval=1.0)
        children.append(api)
        kubelet = KubeletProcess(
            lab.base,
            api_url=api.url,
            cri_endpoint=lab.endpoint,
            root=lab.base / "kubelet",
            time_scale=args.time_scale,
            sync_period=KUBELET_SYNC_PERIOD,
        )
        children.append(kubelet)
        agent = AgentProcess(
            lab.endpoint,
            lab.base,
            extra_args=[
                "--api-server",
                api.url,
                "--enable-kill",
                "--kill-namespaces",
                NAMESPACE,
                "--kill-rate-per-minute",
                "600",
                "--audit-log",
                str(lab.base / "audit.jsonl"),
            ],
            name="agent",
        )
        children.append(agent)
        agent.wait_ready(60)
        for name in victims:
            api.create_pod(manifest(name))
        for name in victims:
            wait_until(f"{name} running", functools.partial(ready_to_kill, agent, name), 90, 0.2)
        log(f"{len(victims)} pods running; kubelet PID {kubelet.pid}, agent PID {agent.pid}")

        poller = RelistPoller(lab.endpoint, POLL_PERIOD).start()
        kills: list[Kill] = []
        try:
            time.sleep(POLL_PERIOD * 1.5)
            t0 = time.monotonic()
            for n in range(1, args.kills + 1):
                # A random pause puts each kill at a random moment of the poller's period.
                time.sleep(rng.uniform(args.pause_min, args.pause_max))
                kill = kill_once(agent, poller, victims[(n - 1) % len(victims)], outcome, n)
                if kill is not None:
                    kills.append(kill)
                if n % 10 == 0:
                    log(f"{n} kills in {time.monotonic() - t0:.0f}s")
                if not kubelet.alive():
                    raise RuntimeError(f"the lab kubelet exited:\n{kubelet.log_tail()}")
        finally:
            poller.stop()
        outcome.check(
            f"all {args.kills} kills measured", len(kills) == args.kills, f"{len(kills)} measured"
        )
        if not kills:
            return outcome

        gone = [k.gone for k in kills]
        exit_ = [k.runtime_exit for k in kills]
        saw = [k.agent_saw_exit for k in kills]
        polled = [k.poll_saw_exit for k in kills if k.poll_saw_exit is not None]
        recover = [k.recover for k in kills if k.recover is not None]
        lag = [k.agent_saw_exit - k.runtime_exit for k in kills]
        poll_lag = [k.poll_saw_exit - k.runtime_exit for k in kills if k.poll_saw_exit is not None]

        poll = f"{POLL_PERIOD:g} s relist poll"
        section(f"Exit detection, {len(kills)} kills (time since the agent sent SIGKILL)")
        rows = [
            ("process gone (agent's pidfd)", *latency_cells(gone)),
            ("runtime's exit time (its own timestamp)", *latency_cells(exit_)),
            ("agent saw runtime exited (its relist)", *latency_cells(saw)),
        ]
        if polled:
            rows.append((f"{poll} saw it exited (measured)", *latency_cells(polled)))
        print(format_table(["observer", *LATENCY_HEADER], rows))
        print()
        lag_rows = [("agent's relist after the runtime's exit time", *latency_cells(lag))]
        if poll_lag:
            lag_rows.append((f"{poll} after the runtime's exit time", *latency_cells(poll_lag)))
        print(format_table(["delay", *LATENCY_HEADER], lag_rows))
        if polled:
            p_gone, p_saw, p_poll = (percentile(v, 50) for v in (gone, saw, polled))
            p99_gone, p99_saw, p99_poll = (percentile(v, 99) for v in (gone, saw, polled))
            print(
                f"\nside by side, p50: process gone {ms(p_gone)}, agent saw runtime exited "
                f"{ms(p_saw)}, {poll} {ms(p_poll)}: poll / pidfd {ratio(p_poll, p_gone)}, "
                f"poll / agent's relist {ratio(p_poll, p_saw)}; p99: {ms(p99_gone)}, "
                f"{ms(p99_saw)}, {ms(p99_poll)} ({ratio(p99_poll, p99_gone)}, "
                f"{ratio(p99_poll, p99_saw)})"
            )
            mean_poll_lag = sum(poll_lag) / len(poll_lag)
            print(
                f"expected of a poll at a random phase: U(0, {POLL_PERIOD:g} s) after the "
                f"runtime lists the exit, {POLL_PERIOD / 2 * 1000:.0f} ms on average; measured: "
                f"{mean_poll_lag * 1000:.0f} ms on average after the runtime's exit time, over "
                f"{len(poll_lag)} kills ({poller.polls} polls, ListContainers p50 "
                f"{ms(percentile(poller.poll_seconds, 50))})"
            )

        section("Recovery (signal -> the API shows the new container ready)")
        if recover:
            print(
                format_table(["", *LATENCY_HEADER], [("time to recover", *latency_cells(recover))])
            )
        healed = sum(k.state == "healed" for k in kills)
        print(
            f"\nthe lab kubelet: sync period {KUBELET_SYNC_PERIOD:g} s, durations scaled by "
            f"{args.time_scale:g}; each pod was killed every {len(victims)} runs; "
            f"{healed} of {len(kills)} measured runs healed"
        )

        outcome.target(
            "process gone p50 (pidfd)",
            ms(percentile(gone, 50)),
            f"<= {TARGET_GONE_P50 * 1000:.0f} ms",
            percentile(gone, 50) <= TARGET_GONE_P50,
        )
        outcome.info("process gone p99", ms(percentile(gone, 99)))
        outcome.info("agent saw runtime exited p50", ms(percentile(saw, 50)))
        if polled:
            outcome.info(f"{poll} saw it exited p50", ms(percentile(polled, 50)))
        if recover:
            outcome.info("time to recover p50", f"{percentile(recover, 50):.2f} s")
        log("tearing down (agent, kubelet, API server, pods, containerd)")
    return outcome


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_heal", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--victims", type=int, default=5, help="pods killed in turn")
    parser.add_argument(
        "--time-scale", type=float, default=0.01, help="the lab kubelet's time scale"
    )
    parser.add_argument("--pause-min", type=float, default=0.1, help="seconds between runs, min")
    parser.add_argument("--pause-max", type=float, default=1.1, help="seconds between runs, max")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.kills < 1 or args.victims < 1:
        parser.error("--kills and --victims must be positive")

    return run_benchmark(
        "bench_heal", lambda: run(args), cannot_run=lab_problem(), errors=LAB_ERRORS
    )


if __name__ == "__main__":
    sys.exit(main())
