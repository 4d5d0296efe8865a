"""Node diagnostics on a node with 110 pods, a quarter of them failing in the usual ways.

Run as root from the repository root::

    python -m bench.bench_diagnostics [--pods 110] [--requests 200]

A private containerd, the lab's API server and the lab kubelet (all as child
processes) run the pods as a node would, at kubelet's own durations by
default. ``--time-scale`` shortens them (0.05: a 10 s back-off lasts half a
second), but a node whose crash loops restart twenty times as often is far
busier than any real one, and the figures then measure that. A quarter of
the pods fail, in equal parts:

* ``crash-*``: the app container exits 1 at once -> CrashLoopBackOff (rule ``crashloop``);
* ``initcrash-*``: the init container exits 1 -> Init:CrashLoopBackOff (``init-crashloop``);
* ``initwait-*``: the init container loops on ``nslookup mydb``, which never resolves
  -> Init:0/1 (``init-waiting``, once it has waited a minute);
* ``notready-*``: an exec readiness probe that fails -> Running 0/1 (``not-ready``,
  after a minute).

The rest are healthy (two containers, or an init container that succeeds).

The agent runs as a subprocess with ``--api-server``. Measured in one run:
warm ``GET /v1/diagnostics`` p50/p90/p99 next to ``GET /v1/pods`` (the same
pods without the evidence), and ``GET /v1/pods/{ns}/{name}/diagnosis`` for one
failing pod. Every timed answer is checked: each failing pod must have a
finding with its rule and container (in at least 90% of the answers: a
crash loop passes through a moment where its pod shows Init:Error or
Running), no healthy pod may have an error or critical finding in any.

Exit status: 0 when every target is met, 1 when a target is missed, 2 when a
check failed (a wrong answer) or the lab could not run.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

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
    time_get,
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

NAMESPACE = "shop"
TARGET_DIAGNOSTICS_P50 = 0.050
# A failing pod must show its rule in at least this share of the timed answers.
MIN_RULE_SHARE = 0.9
BUSYBOX = "busybox"
SLEEP = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]

# kind -> (the rule its finding must carry, the container it must name)
FAILING: dict[str, tuple[str, str]] = {
    "crash": ("crashloop", "app"),
    "initcrash": ("init-crashloop", "migrate"),
    "initwait": ("init-waiting", "wait-db"),
    "notready": ("not-ready", "app"),
}
HEALTHY_KINDS = ("web", "initdone")


@dataclass(frozen=True)
class PodPlan:
    """One pod of the plan: its name and the kind of pod it is."""

    name: str
    kind: str

    @property
    def failing(self) -> bool:
        """Whether its kind is one of the failing ones."""
        return self.kind in FAILING


def container(name: str, command: Sequence[str] = SLEEP, **extra: Any) -> dict[str, Any]:
    """A busybox container spec."""
    return {"name": name, "image": BUSYBOX, "command": list(command), **extra}


def manifest(pod: PodPlan) -> dict[str, Any]:
    """The Pod manifest for its kind."""
    init: list[dict[str, Any]] = []
    if pod.kind == "crash":
        containers = [
            container(
                "app",
                [
                    "sh",
                    "-c",
                    "echo loading config; echo 'fatal: /etc/app/config.yaml missing' >&2; exit 1",
                ],
            ),
            container("sidecar"),
        ]
    elif pod.kind == "initcrash":
        init = [container("migrate", ["sh", "-c", "echo migrating; echo 'db refused' >&2; exit 1"])]
        containers = [container("app")]
    elif pod.kind == "initwait":
        init = [
            container(
                "wait-db",
                ["sh", "-c", "until nslookup mydb; do echo waiting for mydb; sleep 2; done"],
            )
        ]
        containers = [container("app")]
    elif pod.kind == "notready":
        probe = {
            "exec": {"command": ["cat", "/tmp/ready"]},
            "periodSeconds": 30,
            "failureThreshold": 1,
        }
        containers = [container("app", readinessProbe=probe)]
    elif pod.kind == "initdone":
        init = [container("setup", ["sh", "-c", "echo setup done"])]
        containers = [container("app")]
    else:
        containers = [container("app"), container("sidecar")]
    spec: dict[str, Any] = {
        "nodeName": NODE,
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 0,
        "containers": containers,
    }
    if init:
        spec["initContainers"] = init
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": pod.name, "namespace": NAMESPACE, "labels": {"kind": pod.kind}},
        "spec": spec,
    }


def plan(count: int) -> list[PodPlan]:
    """A quarter failing (the four kinds in turn), the rest healthy."""
    failing = round(count / 4)
    pods = []
    kinds = list(FAILING)
    for i in range(failing):
        kind = kinds[i % len(kinds)]
        pods.append(PodPlan(f"{kind}-{i // len(kinds):02d}", kind))
    for i in range(count - failing):
        kind = HEALTHY_KINDS[i % len(HEALTHY_KINDS)]
        pods.append(PodPlan(f"{kind}-{i // len(HEALTHY_KINDS):02d}", kind))
    return pods


# --------------------------------------------------------------------- states


def restarts_of(item: dict[str, Any]) -> int:
    """The RESTARTS count of a pod row (it may carry an age after it)."""
    return int(str(item["restarts"]).split()[0])


def reached(pod: PodPlan, item: dict[str, Any]) -> bool:
    """The pod shows the kubectl STATUS its kind leads to (and, failing, has failed a few times)."""
    status, ready = item["status"], item["ready"]
    if pod.kind == "crash":
        return status in ("CrashLoopBackOff", "Error", "Running") and restarts_of(item) >= 2
    if pod.kind == "initcrash":
        return status in ("Init:CrashLoopBackOff", "Init:Error") and restarts_of(item) >= 2
    if pod.kind == "initwait":
        return bool(status == "Init:0/1")
    if pod.kind == "notready":
        return bool(status == "Running" and ready == "0/1")
    total = ready.split("/")[-1]
    return bool(status == "Running" and ready == f"{total}/{total}" and restarts_of(item) == 0)


def wait_for_states(agent: AgentProcess, pods: list[PodPlan], timeout: float) -> float:
    """Until every pod shows the state its kind leads to; the seconds it took."""
    want = {p.name: p for p in pods}

    def probe() -> bool | None:
        items = agent.http.get("/v1/pods", params={"namespace": NAMESPACE}).json()["items"]
        got = {i["name"]: i for i in items}
        missing = [n for n, p in want.items() if n not in got or not reached(p, got[n])]
        if missing:
            probe.last = missing  # type: ignore[attr-defined]
            return None
        return True

    try:
        _, seconds = wait_until("every pod in its state", probe, timeout, 0.5)
    except RuntimeError as exc:
        last = getattr(probe, "last", [])
        raise RuntimeError(f"{exc}; not there yet: {len(last)} pods, e.g. {last[:5]}") from None
    return seconds


# --------------------------------------------------------------------- checks


@dataclass
class Tally:
    """Over the timed answers: how often each failing pod had its finding; what else showed."""

    answers: int = 0
    hits: dict[str, int] = field(default_factory=dict)
    healthy_bad: list[str] = field(default_factory=list)
    other_rules: dict[str, int] = field(default_factory=dict)
    pods_checked: set[int] = field(default_factory=set)

    def add(self, body: dict[str, Any], pods: list[PodPlan]) -> None:
        """Count one ``GET /v1/diagnostics`` answer."""
        self.answers += 1
        self.pods_checked.add(int(body["pods_checked"]))
        by_pod: dict[str, list[dict[str, Any]]] = {}
        for f in body["items"]:
            if f["namespace"] == NAMESPACE:
                by_pod.setdefault(f["pod"], []).append(f)
        for pod in pods:
            findings = by_pod.get(pod.name, [])
            if pod.failing:
                rule, name = FAILING[pod.kind]
                if any(f["rule"] == rule and f["container"] == name for f in findings):
                    self.hits[pod.name] = self.hits.get(pod.name, 0) + 1
                else:
                    for f in findings:
                        key = f"{pod.kind}: {f['rule']} ({f['severity']})"
                        self.other_rules[key] = self.other_rules.get(key, 0) + 1
                    if not findings:
                        key = f"{pod.kind}: no finding"
                        self.other_rules[key] = self.other_rules.get(key, 0) + 1
            else:
                for f in findings:
                    if f["severity"] in ("error", "critical"):
                        self.healthy_bad.append(f"{pod.name}: {f['rule']} {f['severity']}")
                    else:
                        key = f"healthy: {f['rule']} ({f['severity']})"
                        self.other_rules[key] = self.other_rules.get(key, 0) + 1

    def share(self, name: str) -> float:
        """The share of the answers in which the pod had its finding."""
        return self.hits.get(name, 0) / max(self.answers, 1)


def findings_complete(body: dict[str, Any], pods: list[PodPlan]) -> list[str]:
    """Failing pods without their finding in this answer."""
    have = {(f["pod"], f["rule"], f["container"]) for f in body["items"]}
    return [p.name for p in pods if p.failing and (p.name, *FAILING[p.kind]) not in have]


# --------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> Outcome:
    """The lab up, the pods settled, the timed answers checked; then the report."""
    outcome = Outcome()
    pods = plan(args.pods)
    failing = [p for p in pods if p.failing]
    print(
        f"podlens diagnostics benchmark: {len(pods)} pods through the lab kubelet "
        f"(time scale {args.time_scale:g}), {len(failing)} failing "
        f"({', '.join(f'{sum(p.kind == k for p in pods)} {k}' for k in FAILING)}); real "
        f"containerd; {machine()}"
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
        )
        children.append(kubelet)
        log(f"containerd, API server ({api.url}) and kubelet (PID {kubelet.pid}) up")
        agent = AgentProcess(
            lab.endpoint, lab.base, extra_args=["--api-server", api.url], name="agent"
        )
        children.append(agent)
        agent.wait_ready(60)

        t0 = time.monotonic()
        # Failing pods first: the minute the waiting rules allow starts earlier.
        for pod in sorted(pods, key=lambda p: not p.failing):
            api.create_pod(manifest(pod))
        log(f"{len(pods)} pods created in the API server")
        states_s = wait_for_states(agent, pods, args.state_timeout)
        if not kubelet.alive():
            raise RuntimeError(f"the lab kubelet exited:\n{kubelet.log_tail()}")
        log(f"every pod in its expected state {states_s:.0f}s after creation")

        # The waiting rules (init-waiting, not-ready) report a state that has
        # lasted a minute; wait for every failing pod to have its finding.
        def complete() -> dict[str, Any] | None:
            body: dict[str, Any] = agent.http.get("/v1/diagnostics").json()
            missing = findings_complete(body, pods)
            complete.last = missing  # type: ignore[attr-defined]
            return None if missing else body

        try:
            wait_until("every failing pod has its finding", complete, 150, 1.0)
        except RuntimeError as exc:
            last = getattr(complete, "last", [])
            outcome.check(
                "every failing pod gets a finding with its rule",
                False,
                f"{exc}: {len(last)} without, e.g. {last[:5]}",
            )
            return outcome
        total_s = time.monotonic() - t0
        log(f"every failing pod has its finding {total_s:.0f}s after creation")
        outcome.check("every failing pod gets a finding with its rule", True)

        # ------------------------------------------------------------- timed
        log("timing GET /v1/diagnostics")
        tally = Tally()
        http = agent.http
        last: list[dict[str, Any]] = [{}]

        def tallied(response: httpx.Response) -> str | None:
            last[0] = response.json()
            tally.add(last[0], pods)
            return None  # judged over all answers below

        diag = time_get(http, "/v1/diagnostics", args.requests, args.warmup, check=tallied)
        last_body = last[0]
        outcome.check(
            "GET /v1/diagnostics always 200", not diag.bad, f"{len(diag.bad)}: {diag.bad[:2]}"
        )

        names = {p.name for p in pods}

        def lists_the_pods(response: httpx.Response) -> str | None:
            listed = {i["name"] for i in response.json()["items"] if i["namespace"] == NAMESPACE}
            return None if listed == names else f"{len(listed)} of {len(names)} pods listed"

        listing = time_get(http, "/v1/pods", args.requests, args.warmup, check=lists_the_pods)
        outcome.check(
            f"GET /v1/pods: every answer 200 and lists the {len(pods)} pods",
            not listing.bad,
            f"{len(listing.bad)}: {listing.bad[:2]}",
        )

        target = next(p for p in failing if p.kind == "crash")
        diag_path = f"/v1/pods/{NAMESPACE}/{target.name}/diagnosis"
        one_body: dict[str, Any] = http.get(diag_path).json()

        def names_the_crash_loop(response: httpx.Response) -> str | None:
            findings = response.json().get("findings", [])
            if any(f["rule"] == "crashloop" and f["container"] == "app" for f in findings):
                return None
            return f"rules {[f['rule'] for f in findings]}"

        one = time_get(http, diag_path, args.pod_requests, args.warmup, check=names_the_crash_loop)

        def counts_all_pods(response: httpx.Response) -> str | None:
            first = response.text.splitlines()[0] if response.text else ""
            return None if f" {len(pods)} pods checked" in first else first

        text = time_get(
            http,
            "/v1/diagnostics",
            min(args.requests, 50),
            0,
            params={"output": "text"},
            check=counts_all_pods,
        )
        outcome.check(
            f"GET /v1/diagnostics?output=text: every answer 200 and counts {len(pods)} pods",
            not text.bad,
            f"{len(text.bad)}: {text.bad[:2]}",
        )

        # ------------------------------------------------------------- checks
        outcome.check(
            f"every answer checked all {len(pods)} pods",
            tally.pods_checked == {len(pods)},
            f"pods_checked values {sorted(tally.pods_checked)}",
        )
        low = [
            f"{p.name} {tally.share(p.name):.0%}"
            for p in failing
            if tally.share(p.name) < MIN_RULE_SHARE
        ]
        outcome.check(
            f"each failing pod has its rule in >= {MIN_RULE_SHARE:.0%} of the timed answers",
            not low,
            f"{len(low)} below: {low[:6]}",
        )
        outcome.check(
            "no healthy pod has an error or critical finding in any answer",
            not tally.healthy_bad,
            f"{len(tally.healthy_bad)}, e.g. {tally.healthy_bad[:3]}",
        )
        outcome.check(
            f"GET {diag_path} names the crash loop of container app in every answer",
            not one.bad,
            f"{len(one.bad)} answers without it, e.g. {one.bad[:2]}",
        )

        # ------------------------------------------------------------- report
        section("1. Findings (the last timed answer)")
        rows = []
        for kind, (rule, name) in FAILING.items():
            of_kind = [p for p in failing if p.kind == kind]
            if not of_kind:
                continue
            shares = [tally.share(p.name) for p in of_kind]
            severities = sorted(
                {
                    f["severity"]
                    for f in last_body.get("items", [])
                    if f["rule"] == rule and f["pod"].startswith(f"{kind}-")
                }
            )
            in_last = {
                f["pod"]
                for f in last_body.get("items", [])
                if f["rule"] == rule and f["container"] == name
            }
            rows.append(
                (
                    f"{kind} ({len(of_kind)} pods)",
                    f"{rule} / {name}",
                    f"{sum(p.name in in_last for p in of_kind)}/{len(of_kind)}",
                    ", ".join(severities),
                    f"{min(shares):.0%}",
                )
            )
        healthy = [p for p in pods if not p.failing]
        flagged = {b.split(":")[0] for b in tally.healthy_bad}
        rows.append(
            (
                f"healthy ({len(healthy)} pods)",
                "no error/critical",
                f"{len(healthy) - len(flagged)}/{len(healthy)}",
                "",
                "",
            )
        )
        print(
            format_table(
                [
                    "pods",
                    "expected rule / container",
                    "in last answer",
                    "severity",
                    f"min share of {tally.answers} answers",
                ],
                rows,
            )
        )
        print(
            f"\nlast answer: {last_body.get('pods_checked')} pods checked, "
            f"{last_body.get('pods_with_findings')} with findings, "
            f"{len(last_body.get('items', []))} findings"
        )
        if tally.other_rules:
            print(
                "over all timed answers, what a failing pod had when its expected finding "
                "was missing, and the warnings of healthy pods: "
                + ", ".join(f"{k} x{v}" for k, v in sorted(tally.other_rules.items()))
            )
        sample = next((f for f in one_body.get("findings", []) if f["rule"] == "crashloop"), None)
        if sample is not None:
            print(f"e.g. {target.name}: {sample['summary']}")

        section(
            f"2. Warm HTTP latency ({args.warmup} warm-up, then timed requests, keep-alive, "
            "one client)"
        )
        print(
            format_table(
                ["request", "body", *LATENCY_HEADER],
                [
                    (label, f"{t.body_bytes / 1024:.0f} KiB", *latency_cells(t.samples))
                    for label, t in (
                        ("GET /v1/diagnostics", diag),
                        ("GET /v1/diagnostics?output=text", text),
                        ("GET /v1/pods (same pods, no evidence)", listing),
                        (f"GET {diag_path}", one),
                    )
                ],
            )
        )
        d50 = percentile(diag.samples, 50)
        p50 = percentile(listing.samples, 50)
        one50 = percentile(one.samples, 50)
        print(
            f"\n/v1/diagnostics vs /v1/pods p50: {ms(d50)} vs {ms(p50)} ({ratio(d50, p50)}); "
            f"the last answer had findings for {last_body.get('pods_with_findings')} pods; "
            f"one pod's diagnosis {ms(one50)} (the whole node's takes {ratio(d50, one50)} that)"
        )
        print(
            f"pods in their states {states_s:.0f}s after creation; every failing pod had "
            f"its finding {total_s:.0f}s after creation"
        )
        outcome.target(
            f"GET /v1/diagnostics p50 ({len(pods)} pods, {len(failing)} failing)",
            ms(d50),
            f"<= {TARGET_DIAGNOSTICS_P50 * 1000:.0f} ms",
            d50 <= TARGET_DIAGNOSTICS_P50,
        )
        outcome.info("GET /v1/diagnostics p99", ms(percentile(diag.samples, 99)))
        outcome.info(f"GET {diag_path} p50", ms(one50))
        log("tearing down (agent, kubelet, API server, pods, containerd)")
    return outcome


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_diagnostics", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--pods", type=int, default=110, help="pods on the node")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="the lab kubelet's time scale (default 1: kubelet's own back-off and probe periods)",
    )
    parser.add_argument("--requests", type=int, default=200, help="timed GET /v1/diagnostics")
    parser.add_argument("--pod-requests", type=int, default=100, help="timed pod diagnoses")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument(
        "--state-timeout", type=float, default=240.0, help="seconds for the pods to settle"
    )
    args = parser.parse_args(argv)
    if args.pods < 16:
        parser.error("--pods must be at least 16 (a quarter failing: one of each kind)")

    return run_benchmark(
        "bench_diagnostics", lambda: run(args), cannot_run=lab_problem(), errors=LAB_ERRORS
    )


if __name__ == "__main__":
    sys.exit(main())
