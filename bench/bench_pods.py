"""The joined pod view on a busy cluster: this node's 110 pods among 5,110 in the API server.

Run as root from the repository root::

    python -m bench.bench_pods [--pods 110] [--other-pods 5000] [--steady-seconds 60]

A private containerd runs this node's pods over CRI, two busybox containers
each, created as kubelet creates them (``CriPodDriver``); the in-process fake
API server holds their API objects, with the statuses kubelet would write for
what the runtime runs, and 5,000 more pods bound to other nodes. Two agents
run as subprocesses against the same containerd: one with ``--api-server``,
one without, so their memory can be compared side by side.

Measures, in one run:

1. the RSS of both agents (the API cost should be this node's pods only);
2. warm ``GET /v1/pods`` p50/p90/p99 and ``GET /v1/pods/{ns}/{name}`` p50;
3. over a steady-state window in which pod statuses are patched now and then
   through the fake, the API server's request log: LIST requests after the
   initial sync (target 0) against WATCH requests, and how long a patch takes
   to show in the agent's answer.

It checks that the agent lists exactly this node's pods with the STATUS,
READY and RESTARTS kubectl would print for what was written, the container
IDs and PIDs the runtime has, and no mismatches.

Exit status: 0 when every target is met, 1 when a target is missed, 2 when a
check failed (a wrong answer) or the lab could not run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import psutil

from bench._harness import (
    LATENCY_HEADER,
    MIB,
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
from bench._lab import LAB_ERRORS, NODE, AgentProcess, Lab, lab_problem
from lab.apiserver import FakeApiServer, RequestRecord
from lab.cri_pods import ContainerDef, PodHandle
from lab.images import BUSYBOX_IMAGE

OTHER_NODE = "no-pods-here"
TARGET_PODS_P50 = 0.020
TARGET_LISTS_AFTER_SYNC = 0
# The server ends each watch after this long (a real API server picks 5 to
# 10 minutes); short here so that the window sees watches end and resume.
WATCH_TIMEOUT_SECONDS = 20
BUSYBOX_REF = "docker.io/library/busybox:latest"


def iso(t: datetime) -> str:
    """A time as the API server writes it."""
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------- the pods


@dataclass
class NodePod:
    """One of this node's pods: what was written to the API server, and its runtime handle."""

    namespace: str
    name: str
    kind: str  # "running" or "completed"
    uid: str = ""
    handle: PodHandle | None = None
    started: datetime | None = None
    sidecar_ready: bool = True

    @property
    def expected(self) -> tuple[str, str, str]:
        """STATUS, READY, RESTARTS as kubectl prints them for the status written."""
        if self.kind == "completed":
            return ("Completed", "0/2", "0")
        return ("Running", "2/2" if self.sidecar_ready else "1/2", "0")


def api_object(pod: NodePod) -> dict[str, Any]:
    """The API object of one of this node's pods, bound to it."""
    command = ["sleep", "3600"] if pod.kind == "running" else ["sh", "-c", "echo done"]
    return {
        "metadata": {
            "name": pod.name,
            "namespace": pod.namespace,
            "labels": {"app": pod.name, "tier": "bench"},
            "annotations": {"kubernetes.io/config.source": "api"},
        },
        "spec": {
            "nodeName": NODE,
            "restartPolicy": "Always" if pod.kind == "running" else "Never",
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {"name": "app", "image": "busybox", "command": command},
                {"name": "sidecar", "image": "busybox", "command": command},
            ],
        },
    }


def running_status(pod: NodePod) -> dict[str, Any]:
    """The status kubelet writes for a pod whose two containers run; the sidecar may be unready."""
    assert pod.handle is not None
    assert pod.started is not None
    started = iso(pod.started)
    ready = pod.sidecar_ready
    conditions = [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": started},
        {"type": "Initialized", "status": "True", "lastTransitionTime": started},
    ]
    for kind in ("ContainersReady", "Ready"):
        cond = {"type": kind, "status": "True" if ready else "False", "lastTransitionTime": started}
        if not ready:
            cond["reason"] = "ContainersNotReady"
            cond["message"] = "containers with unready status: [sidecar]"
        conditions.append(cond)
    return {
        "phase": "Running",
        "startTime": started,
        "hostIP": "10.0.0.1",
        "conditions": conditions,
        "containerStatuses": [
            {
                "name": name,
                "image": BUSYBOX_REF,
                "imageID": "",
                "containerID": f"containerd://{inst.id}",
                "ready": ready or name != "sidecar",
                "started": True,
                "restartCount": inst.attempt,
                "state": {"running": {"startedAt": started}},
            }
            for name, inst in pod.handle.containers.items()
        ],
    }


def completed_status(pod: NodePod) -> dict[str, Any]:
    """The status of a restartPolicy Never pod whose containers both exited 0."""
    assert pod.handle is not None
    assert pod.started is not None
    started = iso(pod.started)
    not_ready = {"status": "False", "reason": "PodCompleted", "lastTransitionTime": started}
    return {
        "phase": "Succeeded",
        "startTime": started,
        "hostIP": "10.0.0.1",
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": started},
            {"type": "Initialized", "status": "True", "lastTransitionTime": started},
            {"type": "ContainersReady", **not_ready},
            {"type": "Ready", **not_ready},
        ],
        "containerStatuses": [
            {
                "name": name,
                "image": BUSYBOX_REF,
                "imageID": "",
                "containerID": f"containerd://{inst.id}",
                "ready": False,
                "started": False,
                "restartCount": 0,
                "state": {
                    "terminated": {
                        "exitCode": 0,
                        "reason": "Completed",
                        "startedAt": started,
                        "finishedAt": started,
                        "containerID": f"containerd://{inst.id}",
                    }
                },
            }
            for name, inst in pod.handle.containers.items()
        ],
    }


def other_node_pod(i: int) -> dict[str, Any]:
    """A pod of another node, the size of a small real one."""
    name = f"web-{i:05d}"
    namespace = f"app-{i % 25:02d}"
    node = f"worker-{i % 50:02d}"
    started = "2024-05-01T10:00:00Z"
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app": f"web-{i % 200}", "pod-template-hash": "5d8f9c7b6"},
            "annotations": {"kubectl.kubernetes.io/restartedAt": started},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": f"web-{i % 200}-5d8f9c7b6",
                    "uid": f"00000000-0000-0000-0000-{i % 200:012d}",
                    "controller": True,
                }
            ],
        },
        "spec": {
            "nodeName": node,
            "restartPolicy": "Always",
            "containers": [
                {
                    "name": "web",
                    "image": "nginx:1.27",
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
                }
            ],
        },
        "status": {
            "phase": "Running",
            "hostIP": f"10.0.{i % 50}.1",
            "podIP": f"10.244.{i % 50}.{i % 250 + 2}",
            "startTime": started,
            "conditions": [
                {"type": t, "status": "True", "lastTransitionTime": started}
                for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
            ],
            "containerStatuses": [
                {
                    "name": "web",
                    "image": "docker.io/library/nginx:1.27",
                    "imageID": "docker.io/library/nginx@sha256:" + "0" * 64,
                    "containerID": f"containerd://{i:064x}",
                    "ready": True,
                    "started": True,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": started}},
                }
            ],
        },
    }


def plan_pods(count: int, completed: int, unready: int) -> list[NodePod]:
    """This node's pods: the last ``completed`` completed, the first ``unready`` unready."""
    namespaces = [f"team-{i:02d}" for i in range(max(1, (count + 9) // 10))]
    pods = []
    for i in range(count):
        kind = "completed" if i >= count - completed else "running"
        pod = NodePod(namespaces[i % len(namespaces)], f"svc-{i:03d}", kind)
        if kind == "running" and i < unready:
            pod.sidecar_ready = False
        pods.append(pod)
    return pods


def create_node_pods(lab: Lab, api: FakeApiServer, pods: list[NodePod]) -> None:
    """API object first (for its UID), then the pod through CRI with that UID, then the status."""

    def make(worker: int) -> None:
        driver = lab.drivers[worker]
        for pod in pods[worker :: len(lab.drivers)]:
            created = api.add("pods", api_object(pod))
            pod.uid = created["metadata"]["uid"]
            command = ["sleep", "3600"] if pod.kind == "running" else ["sh", "-c", "echo done"]
            pod.started = datetime.now(UTC)
            pod.handle = driver.run_pod(
                pod.name,
                pod.namespace,
                uid=pod.uid,
                containers=[
                    ContainerDef("app", BUSYBOX_IMAGE, command=command),
                    ContainerDef("sidecar", BUSYBOX_IMAGE, command=command),
                ],
                labels={"app": pod.name, "tier": "bench"},
                termination_grace_period=0,
            )
            status = running_status(pod) if pod.kind == "running" else completed_status(pod)
            api.patch_status(pod.namespace, pod.name, status)

    with ThreadPoolExecutor(len(lab.drivers), thread_name_prefix="pods") as pool:
        for future in [pool.submit(make, w) for w in range(len(lab.drivers))]:
            future.result()


# --------------------------------------------------------------------- the request log


def request_kind(r: RequestRecord) -> str:
    """What a logged API request was: LIST or WATCH of pods or events, or other."""
    parts = [p for p in r.path.split("/") if p]
    if r.method != "GET":
        return f"{r.method} other"
    collection = parts[-1] if parts else ""
    if parts == ["api", "v1", "pods"] or (
        len(parts) == 5 and parts[:3] == ["api", "v1", "namespaces"] and collection == "pods"
    ):
        kind = "WATCH pods" if r.watch else "LIST pods"
        if r.query.get("fieldSelector") != f"spec.nodeName={NODE}":
            kind += f" ({r.query.get('fieldSelector') or 'no selector'})"
        return kind
    if collection == "events" and len(parts) in (3, 5):
        return "WATCH events" if r.watch else "LIST events"
    return "GET other"


def tally(records: Sequence[RequestRecord]) -> dict[str, int]:
    """Logged API requests counted by ``request_kind``."""
    counts: dict[str, int] = {}
    for r in records:
        kind = request_kind(r)
        counts[kind] = counts.get(kind, 0) + 1
    return counts


# --------------------------------------------------------------------- checks


def verify_listing(
    items: list[dict[str, Any]], pods: list[NodePod], outcome: Outcome, when: str
) -> None:
    """The agent's /v1/pods against what was written to the API server and what the runtime runs."""
    by_key = {(p["namespace"], p["name"]): p for p in items}
    expected = {(p.namespace, p.name): p for p in pods}
    outcome.check(
        f"{when}: lists exactly this node's {len(pods)} pods",
        set(by_key) == set(expected) and len(items) == len(pods),
        f"{len(items)} items; {len(set(by_key) - set(expected))} unexpected, "
        f"{len(set(expected) - set(by_key))} missing",
    )
    wrong_status, wrong_ids, no_pid, mismatched, unknown = [], [], [], [], []
    for key, pod in expected.items():
        got = by_key.get(key)
        if got is None:
            continue
        shown = (got["status"], got["ready"], got["restarts"])
        if shown != pod.expected:
            wrong_status.append(f"{key[0]}/{key[1]} {shown} != {pod.expected}")
        if not got["api_known"] or got["uid"] != pod.uid:
            unknown.append(f"{key[0]}/{key[1]}")
        if got["mismatches"]:
            mismatched.append(f"{key[0]}/{key[1]}: {[m['kind'] for m in got['mismatches']]}")
        assert pod.handle is not None
        ids = {c["name"]: c["id"] for c in got["containers"]}
        if ids != pod.handle.container_ids or [s["id"] for s in got["sandboxes"][:1]] != [
            pod.handle.sandbox_id
        ]:
            wrong_ids.append(f"{key[0]}/{key[1]}")
        if pod.kind == "running":
            for c in got["containers"]:
                pid = c["pid"]
                if not pid or not _is_sleep(pid):
                    no_pid.append(f"{key[0]}/{key[1]}/{c['name']} pid {pid}")
    outcome.check(
        f"{when}: STATUS/READY/RESTARTS as kubectl prints them for every pod",
        not wrong_status,
        f"{len(wrong_status)} wrong, e.g. {wrong_status[:3]}",
    )
    outcome.check(
        f"{when}: every pod joined with its API object (api_known, uid)",
        not unknown,
        f"{len(unknown)} not joined, e.g. {unknown[:3]}",
    )
    outcome.check(
        f"{when}: sandbox and container IDs are the runtime's",
        not wrong_ids,
        f"{len(wrong_ids)} differ, e.g. {wrong_ids[:3]}",
    )
    outcome.check(
        f"{when}: running containers have the PID of their sleep process",
        not no_pid,
        f"{len(no_pid)} wrong, e.g. {no_pid[:3]}",
    )
    outcome.check(
        f"{when}: no mismatches reported between API and runtime",
        not mismatched,
        f"{len(mismatched)} pods, e.g. {mismatched[:3]}",
    )


def listing_check(pods: list[NodePod], *, joined: bool) -> Callable[[httpx.Response], str | None]:
    """A check of each ``GET /v1/pods`` answer: this node's pods, as kubectl shows them.

    Without the API server the agent knows no API status: only the names count.
    """
    want = {(p.namespace, p.name): p.expected for p in pods}

    def check(response: httpx.Response) -> str | None:
        items = response.json()["items"]
        if not joined:
            names = {(i["namespace"], i["name"]) for i in items}
            return None if names == set(want) else f"{len(items)} pods listed"
        have = {
            (i["namespace"], i["name"]): (i["status"], i["ready"], i["restarts"]) for i in items
        }
        wrong = [k for k in want if have.get(k) != want[k]]
        if wrong or len(have) != len(want):
            return f"{len(have)} pods, {len(wrong)} not as written, e.g. {wrong[:2]}"
        return None

    return check


def text_listing_check(count: int) -> Callable[[httpx.Response], str | None]:
    """A check of each text answer: a header line, then one line per pod."""

    def check(response: httpx.Response) -> str | None:
        lines = sum(1 for ln in response.text.splitlines() if ln.strip()) - 1
        return None if lines == count else f"{lines} lines for {count} pods"

    return check


def detail_check(pod: NodePod) -> Callable[[httpx.Response], str | None]:
    """A check of each answer about one pod: its STATUS and READY as written."""

    def check(response: httpx.Response) -> str | None:
        body = response.json()
        shown = (body["status"], body["ready"])
        return None if shown == pod.expected[:2] else f"{shown} != {pod.expected[:2]}"

    return check


def _is_sleep(pid: int) -> bool:
    try:
        return psutil.Process(pid).cmdline() == ["sleep", "3600"]
    except psutil.Error:
        return False


# --------------------------------------------------------------------- steady state


@dataclass
class Steady:
    """What the steady-state window saw: patches and how soon each showed, the API requests."""

    seconds: float
    patches: int
    propagation: list[float]
    late: list[str]
    drops: int
    counts: dict[str, int]
    patch_times: list[float]  # seconds into the window, one per propagation figure
    cut_at: float | None  # seconds into the window
    cut_wall: float | None  # time.time() when the cut began, the request log's clock
    records: list[RequestRecord]  # the API server's requests in the window


def steady_state(
    agent: AgentProcess,
    api: FakeApiServer,
    pods: list[NodePod],
    seconds: float,
    interval: float,
    rng: random.Random,
) -> Steady:
    """Patch a pod's readiness every ``interval`` s; time until the agent shows it.

    Halfway through, every open watch is cut (as a load balancer or an API
    server restart would); the agent must resume from its resourceVersion.
    """
    start_index = len(api.requests)
    t0 = time.monotonic()
    propagation: list[float] = []
    late: list[str] = []
    patches = drops = 0
    dropped = False
    patch_times: list[float] = []
    cut_at: float | None = None
    cut_wall: float | None = None
    running = [p for p in pods if p.kind == "running"]
    next_patch = t0 + interval
    while time.monotonic() - t0 < seconds:
        if not dropped and time.monotonic() - t0 >= seconds / 2:
            cut_at = time.monotonic() - t0
            cut_wall = time.time()
            drops = api.drop_watches()
            dropped = True
            log(f"cut {drops} open watch stream(s)")
        now = time.monotonic()
        if now < next_patch:
            time.sleep(min(next_patch - now, 0.2))
            continue
        next_patch += interval
        pod = rng.choice(running)
        pod.sidecar_ready = not pod.sidecar_ready
        t_patch = time.perf_counter()
        api.patch_status(pod.namespace, pod.name, running_status(pod))
        patches += 1
        want = pod.expected
        deadline = t_patch + 10.0
        while True:
            items = agent.http.get("/v1/pods", params={"namespace": pod.namespace}).json()["items"]
            got = next((i for i in items if i["name"] == pod.name), None)
            if got is not None and (got["status"], got["ready"], got["restarts"]) == want:
                propagation.append(time.perf_counter() - t_patch)
                patch_times.append(now - t0)
                break
            if time.perf_counter() > deadline:
                late.append(f"{pod.namespace}/{pod.name} wanted {want}")
                break
            time.sleep(0.005)
    elapsed = time.monotonic() - t0
    records = api.requests[start_index:]
    return Steady(
        elapsed,
        patches,
        propagation,
        late,
        drops,
        tally(records),
        patch_times,
        cut_at,
        cut_wall,
        records,
    )


# --------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> Outcome:
    """The lab and the fake up, three agents, the figures and checks; then the report."""
    outcome = Outcome()
    rng = random.Random(args.seed)
    print(
        f"podlens pods benchmark: {args.pods} pods on this node (2 busybox containers each, "
        f"real containerd) among {args.pods + args.other_pods} pods in the API server; "
        f"{machine()}"
    )
    with (
        Lab(workers=args.workers) as lab,
        FakeApiServer(bookmark_interval=1.0) as api,
        stopped_on_exit() as agents,
    ):
        log(f"containerd up at {lab.endpoint}; fake API server at {api.url}")
        t0 = time.monotonic()
        for i in range(args.other_pods):
            api.add("pods", other_node_pod(i))
        log(f"{args.other_pods} other nodes' pods added in {time.monotonic() - t0:.1f}s")

        pods = plan_pods(args.pods, args.completed, args.unready)
        t0 = time.monotonic()
        create_node_pods(lab, api, pods)
        create_s = time.monotonic() - t0
        log(f"{len(pods)} pods created through CRI with their API objects in {create_s:.1f}s")

        everything = api.list_objects("pods")
        mine = [p for p in everything if p["spec"].get("nodeName") == NODE]
        all_bytes = len(json.dumps(everything))
        mine_bytes = len(json.dumps(mine))
        outcome.check(
            "the fake holds the node's pods and the others",
            len(mine) == args.pods and len(everything) == args.pods + args.other_pods,
            f"{len(mine)} on the node, {len(everything)} in all",
        )

        api.clear_log()
        os.environ["PODLENS_API_WATCH_TIMEOUT_SECONDS"] = str(WATCH_TIMEOUT_SECONDS)
        try:
            with_api = AgentProcess(
                lab.endpoint, lab.base, extra_args=["--api-server", api.url], name="agent-api"
            )
            agents.append(with_api)
            # Watches the same API server for a node with no pods of its own:
            # what the API client costs before any pod is held.
            api_no_pods = AgentProcess(
                lab.endpoint,
                lab.base,
                extra_args=["--api-server", api.url, "--node-name", OTHER_NODE],
                name="agent-api-other-node",
            )
            agents.append(api_no_pods)
        finally:
            os.environ.pop("PODLENS_API_WATCH_TIMEOUT_SECONDS", None)
        cri_only = AgentProcess(lab.endpoint, lab.base, name="agent-cri-only")
        agents.append(cri_only)
        with_api.wait_ready(60)
        cri_only.wait_ready(60)
        api_no_pods.wait_ready(60)

        def synced_with(
            agent: AgentProcess, joined: bool
        ) -> Callable[[], list[dict[str, Any]] | None]:
            check = listing_check(pods, joined=joined)

            def synced() -> list[dict[str, Any]] | None:
                response = agent.http.get("/v1/pods")
                if check(response) is not None:
                    return None
                items: list[dict[str, Any]] = response.json()["items"]
                running = [
                    c
                    for i in items
                    for c in i["containers"]
                    if c["state"] == "running" or i["status"] == "Running"
                ]
                return items if all(c["pid"] for c in running) else None

            return synced

        first, sync_s = wait_until(
            "agent-api lists every pod as written", synced_with(with_api, True), 90, 0.1
        )
        sync_index = len(api.requests)
        initial = tally(api.requests[:sync_index])
        initial_lists = [r for r in api.requests[:sync_index] if request_kind(r) == "LIST pods"]
        log(f"agent-api synced {sync_s:.1f}s after it was ready")

        wait_until("agent-cri-only lists every pod", synced_with(cri_only, False), 90, 0.2)
        verify_listing(first, pods, outcome, "at sync")
        outcome.check(
            "initial sync: one LIST of pods, with the node's field selector",
            len(initial_lists) == 1
            and initial_lists[0].query.get("fieldSelector") == f"spec.nodeName={NODE}",
            f"{[(r.path, r.query) for r in initial_lists]}",
        )
        node_info = with_api.http.get("/v1/node").json()
        outcome.check(
            "agent-api: /v1/node counts only this node's pods from the API",
            node_info["api"]["state"] == "ok" and node_info["api"]["pods_on_node"] == len(pods),
            f"{node_info['api']}",
        )
        other_info = api_no_pods.http.get("/v1/node").json()
        outcome.check(
            f"agent for node {OTHER_NODE}: synced with the API server, holds none of its pods",
            other_info["api"]["state"] == "ok" and other_info["api"]["pods_on_node"] == 0,
            f"{other_info['api']}",
        )
        time.sleep(3.0)
        rss_api_synced = with_api.rss_bytes()
        rss_cri_synced = cri_only.rss_bytes()
        rss_no_pods = api_no_pods.rss_bytes()
        api_no_pods.terminate()

        # ------------------------------------------------------------- HTTP latency
        log("HTTP latency")
        sample = next(p for p in pods if p.kind == "running" and p.sidecar_ready)
        detail_path = f"/v1/pods/{sample.namespace}/{sample.name}"
        detail = with_api.http.get(detail_path)
        outcome.check(
            f"GET {detail_path}",
            detail.status_code == 200
            and (detail.json()["status"], detail.json()["ready"]) == sample.expected[:2],
            f"{detail.status_code} {detail.text[:200]}",
        )
        rows = []
        timed: dict[str, list[float]] = {}
        for label, agent, path, params, check in (
            ("GET /v1/pods", with_api, "/v1/pods", None, listing_check(pods, joined=True)),
            (
                "GET /v1/pods?output=text",
                with_api,
                "/v1/pods",
                {"output": "text"},
                text_listing_check(len(pods)),
            ),
            (f"GET {detail_path}", with_api, detail_path, None, detail_check(sample)),
            (
                "GET /v1/pods (agent-cri-only)",
                cri_only,
                "/v1/pods",
                None,
                listing_check(pods, joined=False),
            ),
        ):
            result = time_get(
                agent.http, path, args.requests, args.warmup, params=params, check=check
            )
            outcome.check(
                f"{label}: every answer 200 and right",
                not result.bad,
                f"{len(result.bad)} not, e.g. {result.bad[:2]}",
            )
            timed[label] = result.samples
            rows.append(
                (label, f"{result.body_bytes / 1024:.0f} KiB", *latency_cells(result.samples))
            )
        host_processes = len(psutil.pids())
        p50_list = percentile(timed["GET /v1/pods"], 50)
        p50_detail = percentile(timed[f"GET {detail_path}"], 50)
        p50_cri = percentile(timed["GET /v1/pods (agent-cri-only)"], 50)
        outcome.target(
            f"GET /v1/pods p50 ({len(pods)} pods, joined)",
            ms(p50_list),
            f"<= {TARGET_PODS_P50 * 1000:.0f} ms",
            p50_list <= TARGET_PODS_P50,
        )
        outcome.info(f"GET {detail_path} p50", ms(p50_detail))
        detail_requests = 1 + args.warmup + args.requests
        rss_api_http = with_api.rss_bytes()

        # ------------------------------------------------------------- steady state
        log(
            f"steady state for {args.steady_seconds:.0f}s, a status patch every "
            f"{args.patch_interval:g}s"
        )
        steady = steady_state(with_api, api, pods, args.steady_seconds, args.patch_interval, rng)
        since_sync = tally(api.requests[sync_index:])
        final = with_api.http.get("/v1/pods").json()["items"]
        verify_listing(final, pods, outcome, "after the window")
        outcome.check(
            "every patch showed in the agent's answer within 10 s",
            not steady.late,
            f"{len(steady.late)} late: {steady.late[:3]}",
        )
        rss_api_end = with_api.rss_bytes()
        rss_cri_end = cri_only.rss_bytes()

        # ------------------------------------------------------------- report
        section("1. Agent memory (RSS); every agent on the same containerd and pods")
        print(
            format_table(
                ["agent", "API pods held", "RSS synced, idle 3 s", "after HTTP run", "at the end"],
                [
                    (
                        "agent-cri-only (no --api-server)",
                        "-",
                        f"{rss_cri_synced / MIB:.1f} MiB",
                        "",
                        f"{rss_cri_end / MIB:.1f} MiB",
                    ),
                    (
                        f"agent-api-other-node (--node-name {OTHER_NODE})",
                        "0",
                        f"{rss_no_pods / MIB:.1f} MiB",
                        "",
                        "(stopped)",
                    ),
                    (
                        "agent-api (this node)",
                        str(node_info["api"]["pods_on_node"]),
                        f"{rss_api_synced / MIB:.1f} MiB",
                        f"{rss_api_http / MIB:.1f} MiB",
                        f"{rss_api_end / MIB:.1f} MiB",
                    ),
                ],
            )
        )
        print(
            f"\nwith the API vs without, synced: {(rss_api_synced - rss_cri_synced) / MIB:+.1f} MiB"
            f" = the API client and watch {(rss_no_pods - rss_cri_synced) / MIB:+.1f} MiB + "
            f"this node's {len(pods)} pods {(rss_api_synced - rss_no_pods) / MIB:+.1f} MiB "
            f"(GET /v1/node: agent-api-other-node holds {other_info['api']['pods_on_node']} "
            f"of the API server's pods, agent-api {node_info['api']['pods_on_node']})"
        )
        print(
            f"the API server holds {len(everything)} pods ({all_bytes / MIB:.1f} MiB of JSON); "
            f"the node's {len(mine)} are {mine_bytes / 1024:.0f} KiB of it "
            f"({mine_bytes / all_bytes * 100:.1f}%). agent-api holds "
            f"{node_info['api']['pods_on_node']} pods from the API (GET /v1/node)."
        )
        outcome.info("agent-api RSS, synced", f"{rss_api_synced / MIB:.1f} MiB")
        outcome.info(
            "RSS with the API minus without, synced",
            f"{(rss_api_synced - rss_cri_synced) / MIB:+.1f} MiB",
        )

        section(
            f"2. Warm HTTP latency ({args.warmup} warm-up, then {args.requests} timed requests "
            "each, keep-alive, one client)"
        )
        print(format_table(["request", "body", *LATENCY_HEADER], rows))
        print(
            f"\njoined view vs runtime-only view, GET /v1/pods p50: {ms(p50_list)} vs "
            f"{ms(p50_cri)} ({ratio(p50_list, p50_cri)}); detail vs list: "
            f"{ratio(p50_detail, p50_list)}, with {host_processes} processes on this host (the "
            "detail's process trees are read from /proc)"
        )

        section(f"3. Requests to the API server ({WATCH_TIMEOUT_SECONDS} s watch timeout)")
        kinds = sorted(set(initial) | set(since_sync) | set(steady.counts))
        print(
            format_table(
                [
                    "request",
                    "initial sync",
                    "since sync (HTTP run + window)",
                    f"steady window ({steady.seconds:.0f} s)",
                ],
                [
                    (k, initial.get(k, 0), since_sync.get(k, 0), steady.counts.get(k, 0))
                    for k in kinds
                ],
            )
        )
        lists_after = since_sync.get("LIST pods", 0)
        watches_window = steady.counts.get("WATCH pods", 0)
        watch_records = [r for r in steady.records if request_kind(r) == "WATCH pods"]
        from_version = [r for r in watch_records if r.query.get("resourceVersion")]
        rewatch = next(
            (
                r.timestamp - steady.cut_wall
                for r in watch_records
                if steady.cut_wall is not None and r.timestamp >= steady.cut_wall
            ),
            None,
        )
        events_window = steady.counts.get("LIST events", 0)
        events_http = since_sync.get("LIST events", 0) - events_window
        print(
            f"\nLIST vs WATCH of pods in the window: {steady.counts.get('LIST pods', 0)} vs "
            f"{watches_window} (the server ends each watch after {WATCH_TIMEOUT_SECONDS} s; "
            f"{steady.drops} stream(s) were cut halfway); {len(from_version)} of the "
            f"{watches_window} watches named the resourceVersion to resume from. "
            f"LIST events: {events_http} during the HTTP run (which made {detail_requests} "
            f"requests for one pod's detail), {events_window} in the window."
        )
        if rewatch is not None:
            print(f"the first watch after the cut came {rewatch:.2f} s after the cut began")
        if steady.propagation:
            print(
                f"{steady.patches} status patches through the fake, "
                f"{len(steady.propagation)} seen in the agent's GET /v1/pods within 10 s, after "
                f"p50 {ms(percentile(steady.propagation, 50))}, "
                f"p90 {ms(percentile(steady.propagation, 90))}, "
                f"max {ms(max(steady.propagation))} (patch -> watch event -> answer)"
            )
            slowest = max(range(len(steady.propagation)), key=steady.propagation.__getitem__)
            if steady.cut_at is not None:
                after = steady.patch_times[slowest] - steady.cut_at
                print(f"the slowest was patched {after:+.1f} s from the cut")
        outcome.check(
            "every watch in the window resumed from a resourceVersion",
            len(from_version) == watches_window,
            f"{watches_window - len(from_version)} of {watches_window} without one",
        )
        outcome.target(
            "LIST pods requests after the initial sync",
            str(lists_after),
            f"== {TARGET_LISTS_AFTER_SYNC}",
            lists_after == TARGET_LISTS_AFTER_SYNC,
        )
        outcome.info(
            f"WATCH pods requests in the {steady.seconds:.0f} s window", str(watches_window)
        )
        if steady.propagation:
            outcome.info("patch -> agent's answer p50", ms(percentile(steady.propagation, 50)))
        outcome.check(
            "the watch resumed after the cut and the timeouts",
            watches_window >= max(1, math.ceil(args.steady_seconds / WATCH_TIMEOUT_SECONDS) - 1),
            f"{watches_window} watches",
        )
        print(
            f"\ncreation: {len(pods)} pods in {create_s:.1f}s ({args.workers} threads); "
            f"agent-api listed them all {sync_s:.1f}s after it was ready"
        )
        log("tearing down (agents, fake API server, pods, containerd)")
    return outcome


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_pods", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--pods", type=int, default=110, help="pods on this node")
    parser.add_argument("--other-pods", type=int, default=5000, help="pods on other nodes")
    parser.add_argument(
        "--completed", type=int, default=5, help="of this node's pods, how many have completed"
    )
    parser.add_argument(
        "--unready", type=int, default=5, help="running pods whose sidecar starts unready"
    )
    parser.add_argument("--workers", type=int, default=4, help="threads creating pods")
    parser.add_argument("--requests", type=int, default=300, help="timed HTTP requests per URL")
    parser.add_argument("--warmup", type=int, default=20, help="warm-up HTTP requests per URL")
    parser.add_argument("--steady-seconds", type=float, default=60.0)
    parser.add_argument(
        "--patch-interval", type=float, default=2.0, help="seconds between status patches"
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.completed + args.unready > args.pods:
        parser.error("--completed + --unready must not exceed --pods")

    return run_benchmark(
        "bench_pods", lambda: run(args), cannot_run=lab_problem(), errors=LAB_ERRORS
    )


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    sys.exit(main())
