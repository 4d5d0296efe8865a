"""The diagnosis rules over pods shaped like the API server serves them.

Every rule is exercised firing and not firing; the pods go through
``pod_from_dict`` exactly as the agent's watch delivers them. The host facts
the caller feeds the rules (listening ports, cgroup OOM counters) are tested
at the end against real processes and crafted procfs/cgroup trees.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.diagnose import (
    RULE_IDS,
    ContainerLogs,
    DiagnosisInput,
    Evidence,
    Finding,
    Thresholds,
    backoff_for_restarts,
    backoff_from_message,
    classify_pull,
    classify_start,
    decode_exit,
    diagnose,
    missing_config,
    parse_go_duration,
    registry_of,
    service_for,
    wait_plan,
)
from agent.domain.kubemodel import ApiEvent
from agent.domain.model import Container, ContainerState, Mount, PodRef, Sandbox, SandboxState
from agent.domain.podview import build_pod_view, build_pod_views
from agent.errors import ProcessGone
from agent.host import listening_tcp_ports, oom_kill_count
from agent.kube.convert import event_from_dict, pod_from_dict

NOW = datetime(2025, 3, 4, 12, 0, 0, tzinfo=UTC)
NODE = "worker-1"
UID = "9f1c3c7e-2b7a-4d64-8f0e-1a2b3c4d5e6f"
Doc = dict[str, Any]
FIXTURES = Path(__file__).parent / "fixtures"


def rid(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def stamp(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


# --------------------------------------------------------------------------
# Documents, shaped like `kubectl get pod -o json`
# --------------------------------------------------------------------------

TOKEN_MOUNT: Doc = {
    "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
    "name": "kube-api-access-x7k2p",
    "readOnly": True,
}


def cspec(
    name: str,
    *,
    image: str | None = None,
    command: list[str] | None = None,
    args: list[str] | None = None,
    ports: list[int] | None = None,
    mounts: list[Doc] | None = None,
    sidecar: bool = False,
    limits: dict[str, str] | None = None,
    readiness: Doc | None = None,
    env: list[Doc] | None = None,
    pull_policy: str = "IfNotPresent",
) -> Doc:
    c: Doc = {
        "name": name,
        "image": image or f"registry.example.com/shop/{name}:1.4",
        "imagePullPolicy": pull_policy,
        "resources": {"limits": limits} if limits else {},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "volumeMounts": [TOKEN_MOUNT, *(mounts or [])],
    }
    if command is not None:
        c["command"] = command
    if args is not None:
        c["args"] = args
    if ports:
        c["ports"] = [{"containerPort": p, "protocol": "TCP"} for p in ports]
    if sidecar:
        c["restartPolicy"] = "Always"
    if readiness is not None:
        c["readinessProbe"] = readiness
    if env is not None:
        c["env"] = env
    return c


def running(started_ago: float = 3000) -> Doc:
    return {"running": {"startedAt": stamp(started_ago)}}


def waiting(reason: str, message: str | None = None) -> Doc:
    w: Doc = {"reason": reason}
    if message is not None:
        w["message"] = message
    return {"waiting": w}


def terminated(
    exit_code: int,
    *,
    reason: str | None = None,
    finished_ago: float = 30,
    ran: float = 5,
    message: str | None = None,
    label: str = "last",
    signal: int | None = None,
) -> Doc:
    t: Doc = {
        "exitCode": exit_code,
        "reason": reason if reason is not None else ("Completed" if exit_code == 0 else "Error"),
        "startedAt": stamp(finished_ago + ran),
        "finishedAt": stamp(finished_ago),
        "containerID": f"containerd://{rid(label)}",
    }
    if message is not None:
        t["message"] = message
    if signal is not None:
        t["signal"] = signal
    return {"terminated": t}


def cstatus(
    name: str,
    state: Doc,
    *,
    last: Doc | None = None,
    ready: bool | None = None,
    restarts: int = 0,
    started: bool | None = None,
    image: str | None = None,
) -> Doc:
    is_running = "running" in state
    s: Doc = {
        "name": name,
        "image": image or f"registry.example.com/shop/{name}:1.4",
        "imageID": "",
        "ready": is_running if ready is None else ready,
        "started": is_running if started is None else started,
        "restartCount": restarts,
        "state": state,
        "lastState": last or {},
    }
    if is_running or "terminated" in state:
        s["containerID"] = f"containerd://{rid(name + str(restarts))}"
    return s


def cond(type_: str, status: bool, seconds_ago: float = 3600, **extra: str) -> Doc:
    return {
        "type": type_,
        "status": "True" if status else "False",
        "lastProbeTime": None,
        "lastTransitionTime": stamp(seconds_ago),
        **extra,
    }


def pod_doc(
    name: str = "web-7c9d8b6f4d-x2lqp",
    *,
    namespace: str = "shop",
    init: list[Doc] | None = None,
    containers: list[Doc] | None = None,
    init_statuses: list[Doc] | None = None,
    statuses: list[Doc] | None = None,
    phase: str = "Running",
    restart_policy: str = "Always",
    created: float = 3600,
    conditions: list[Doc] | None = None,
    volumes: list[Doc] | None = None,
    node: str | None = NODE,
    meta: Doc | None = None,
    status_extra: Doc | None = None,
    spec_extra: Doc | None = None,
) -> Doc:
    spec: Doc = {
        "containers": containers if containers is not None else [cspec("web")],
        "restartPolicy": restart_policy,
        "serviceAccountName": "default",
        "terminationGracePeriodSeconds": 30,
        "volumes": [
            {
                "name": "kube-api-access-x7k2p",
                "projected": {
                    "sources": [
                        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                        {"configMap": {"name": "kube-root-ca.crt"}},
                    ]
                },
            },
            *(volumes or []),
        ],
        **(spec_extra or {}),
    }
    if node is not None:
        spec["nodeName"] = node
    if init:
        spec["initContainers"] = init
    status: Doc = {
        "phase": phase,
        "conditions": conditions
        if conditions is not None
        else [cond("PodScheduled", True, created), cond("Initialized", True, created)],
        "qosClass": "BestEffort",
        "startTime": stamp(created),
        **(status_extra or {}),
    }
    if statuses is not None:
        status["containerStatuses"] = statuses
    if init_statuses is not None:
        status["initContainerStatuses"] = init_statuses
    metadata: Doc = {
        "name": name,
        "namespace": namespace,
        "uid": UID,
        "resourceVersion": "1849203",
        "creationTimestamp": stamp(created),
        "labels": {"app": "web", "pod-template-hash": "7c9d8b6f4d"},
        "ownerReferences": [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "web-7c9d8b6f4d",
                "uid": "5b0a2f0e-8d7b-4e8a-9f43-0c1d2e3f4a5b",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
        **(meta or {}),
    }
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec, "status": status}


def event(
    reason: str,
    message: str,
    *,
    container: str | None = None,
    init: bool = False,
    count: int = 1,
    last_ago: float = 10,
    first_ago: float | None = None,
    type_: str = "Warning",
    pod: str = "web-7c9d8b6f4d-x2lqp",
    namespace: str = "shop",
) -> Doc:
    involved: Doc = {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": pod,
        "namespace": namespace,
        "uid": UID,
    }
    if container is not None:
        group = "initContainers" if init else "containers"
        involved["fieldPath"] = f"spec.{group}{{{container}}}"
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{pod}.{rid(reason + message)[:16]}",
            "namespace": namespace,
            "creationTimestamp": stamp(first_ago if first_ago is not None else last_ago),
        },
        "involvedObject": involved,
        "reason": reason,
        "message": message,
        "type": type_,
        "count": count,
        "firstTimestamp": stamp(first_ago if first_ago is not None else last_ago),
        "lastTimestamp": stamp(last_ago),
        "source": {"component": "kubelet", "host": NODE},
    }


def run(
    doc: Doc | None,
    events: list[Doc] | tuple[ApiEvent, ...] = (),
    *,
    thresholds: Thresholds | None = None,
    **kw: Any,
) -> list[Finding]:
    evs = tuple(e if isinstance(e, ApiEvent) else event_from_dict(e) for e in events)
    inp = DiagnosisInput(
        pod=pod_from_dict(doc) if doc is not None else None,
        events=evs,
        node_name=NODE,
        now=NOW,
        **kw,
    )
    if thresholds is not None:
        return diagnose(inp, thresholds=thresholds)
    return diagnose(inp)


def rules(findings: list[Finding]) -> list[str]:
    return [f.rule for f in findings]


def one(findings: list[Finding], rule: str) -> Finding:
    hits = [f for f in findings if f.rule == rule]
    assert len(hits) == 1, f"expected one {rule}, got {rules(findings)}"
    return hits[0]


def ev(f: Finding, label: str) -> Evidence:
    hits = [e for e in f.evidence if e.label == label]
    assert hits, f"no evidence {label!r} in {[e.label for e in f.evidence]}"
    return hits[0]


# --------------------------------------------------------------------------
# Healthy and fresh pods say nothing
# --------------------------------------------------------------------------


def test_a_healthy_pod_with_a_native_sidecar_has_no_findings() -> None:
    doc = pod_doc(
        init=[cspec("log-shipper", sidecar=True)],
        init_statuses=[cstatus("log-shipper", running(3500), ready=True)],
        statuses=[cstatus("web", running(3400))],
    )
    assert run(doc, listening={}, oom_kills={"web": 0, "log-shipper": 0}) == []


def test_a_pod_just_scheduled_without_statuses_is_not_flagged_yet() -> None:
    doc = pod_doc(
        created=20,
        phase="Pending",
        conditions=[cond("PodScheduled", True, 20)],
    )
    assert run(doc) == []


def test_nothing_to_diagnose_without_pod_or_view() -> None:
    assert diagnose(DiagnosisInput(now=NOW, node_name=NODE)) == []


def test_the_catalogue_lists_every_rule_once() -> None:
    assert len(RULE_IDS) == len(set(RULE_IDS))
    for rule in (
        "init-waiting",
        "init-crashloop",
        "init-failed",
        "crashloop",
        "oom-killed",
        "image-pull",
        "config-error",
        "start-error",
        "not-ready",
        "stuck-creating",
        "terminating-stuck",
        "evicted",
        "container-status-unknown",
        "mismatch-*",
        "port-not-listening",
        "volume-not-shared",
    ):
        assert rule in RULE_IDS


# --------------------------------------------------------------------------
# init-waiting
# --------------------------------------------------------------------------

NSLOOKUP = ["sh", "-c", "until nslookup myservice; do echo waiting for myservice; sleep 2; done"]


def myapp(
    *, started_ago: float = 300, first_done: bool = False, services_ns: str = "default"
) -> Doc:
    init = [
        cspec("init-myservice", image="busybox:1.28", command=NSLOOKUP),
        cspec(
            "init-mydb",
            image="busybox:1.28",
            command=["sh", "-c", "until nslookup mydb; do echo waiting for mydb; sleep 2; done"],
        ),
    ]
    if first_done:
        init_statuses = [
            cstatus("init-myservice", terminated(0, finished_ago=started_ago + 1, label="svc")),
            cstatus("init-mydb", running(started_ago), ready=False),
        ]
    else:
        init_statuses = [
            cstatus("init-myservice", running(started_ago), ready=False),
            cstatus("init-mydb", waiting("PodInitializing")),
        ]
    return pod_doc(
        "myapp-pod",
        namespace=services_ns,
        init=init,
        containers=[cspec("myapp-container", image="busybox:1.28")],
        phase="Pending",
        created=started_ago + 5,
        conditions=[
            cond("PodScheduled", True, started_ago + 5),
            cond("Initialized", False, started_ago + 5, reason="ContainersNotInitialized"),
        ],
        init_statuses=init_statuses,
        statuses=[cstatus("myapp-container", waiting("PodInitializing"))],
    )


def test_init_waiting_on_a_service_that_does_not_exist() -> None:
    logs = {"init-myservice": ContainerLogs(current=("waiting for myservice",) * 8, source="cri")}
    f = one(run(myapp(), services=frozenset({"kubernetes"}), logs=logs), "init-waiting")
    assert f.severity == "warning"
    assert f.container == "init-myservice"
    assert "(1 of 2)" in f.summary
    assert "Init:0/2" in f.summary
    assert "5m" in f.summary
    assert f.since == ago(300)
    check = ev(f, "Service myservice")
    assert check.kind == "check"
    assert check.value == "no Service named myservice in namespace default"
    assert "no Service named myservice in namespace default" in f.cause
    assert ev(f, "last 5 log lines of init-myservice (current attempt) from cri").kind == "log"
    assert "kubectl -n default get service myservice" in f.next_steps
    assert "kubectl -n default logs myapp-pod -c init-myservice" in f.next_steps
    assert "/v1/pods/default/myapp-pod/logs?container=init-myservice" in f.next_steps


def test_init_waiting_on_a_service_that_exists_points_behind_it() -> None:
    f = one(run(myapp(), services=frozenset({"myservice"})), "init-waiting")
    assert ev(f, "Service myservice").value == "exists in namespace default"
    assert "endpoints" in f.cause
    assert "kubectl -n default get endpointslices -l kubernetes.io/service-name=myservice" in (
        f.next_steps
    )


def test_init_waiting_without_known_services_says_not_checked() -> None:
    f = one(run(myapp()), "init-waiting")
    assert "not checked" in ev(f, "Service myservice").value


def test_init_waiting_on_the_second_init_container() -> None:
    f = one(run(myapp(first_done=True), services=frozenset()), "init-waiting")
    assert f.container == "init-mydb"
    assert "(2 of 2)" in f.summary
    assert "Init:1/2" in f.summary
    assert ev(f, "Service mydb").value == "no Service named mydb in namespace default"


@pytest.mark.parametrize(
    ("started_ago", "severity"),
    [(30, None), (61, "warning"), (599, "warning"), (601, "error")],
)
def test_init_waiting_thresholds(started_ago: float, severity: str | None) -> None:
    found = [f for f in run(myapp(started_ago=started_ago)) if f.rule == "init-waiting"]
    assert [f.severity for f in found] == ([severity] if severity else [])


def test_init_waiting_thresholds_are_parameters() -> None:
    th = Thresholds(init_waiting_warning=timedelta(seconds=10))
    assert rules(run(myapp(started_ago=30), thresholds=th)) == ["init-waiting"]


def test_init_waiting_on_a_fully_qualified_name_in_another_namespace() -> None:
    command = [
        "sh",
        "-c",
        "until wget -qO- http://api.backend.svc.cluster.local:8080/ready; do sleep 1; done",
    ]
    doc = pod_doc(
        init=[cspec("wait-api", command=command)],
        init_statuses=[cstatus("wait-api", running(120), ready=False)],
        statuses=[cstatus("web", waiting("PodInitializing"))],
        phase="Pending",
        conditions=[cond("PodScheduled", True), cond("Initialized", False)],
    )
    f = one(run(doc, services=frozenset()), "init-waiting")
    assert "URL http://api.backend.svc.cluster.local:8080/ready" in f.summary
    assert "only namespace shop's Services are known" in ev(f, "Service api").value


def test_init_waiting_on_a_file_nobody_writes() -> None:
    doc = pod_doc(
        init=[
            cspec(
                "wait-file",
                command=["sh", "-c", "until [ -f /work/ready ]; do sleep 1; done"],
                mounts=[{"name": "work", "mountPath": "/work"}],
            )
        ],
        containers=[cspec("web", mounts=[{"name": "work", "mountPath": "/data"}])],
        volumes=[{"name": "work", "emptyDir": {}}],
        init_statuses=[cstatus("wait-file", running(200), ready=False)],
        statuses=[cstatus("web", waiting("PodInitializing"))],
        phase="Pending",
        conditions=[cond("PodScheduled", True), cond("Initialized", False)],
    )
    f = one(run(doc), "init-waiting")
    assert ev(f, "file /work/ready").value.startswith("on volume work")
    assert "no app container runs yet" in f.cause


def test_sidecar_not_started_blocks_the_next_init_container() -> None:
    doc = pod_doc(
        init=[cspec("proxy", sidecar=True), cspec("migrate")],
        init_statuses=[
            cstatus("proxy", running(400), ready=False, started=False),
            cstatus("migrate", waiting("PodInitializing")),
        ],
        statuses=[cstatus("web", waiting("PodInitializing"))],
        phase="Pending",
        conditions=[cond("PodScheduled", True), cond("Initialized", False)],
    )
    f = one(run(doc), "init-waiting")
    assert f.container == "proxy"
    assert f.summary.startswith("sidecar proxy (1 of 2)")
    assert "startup probe" in f.cause


# --------------------------------------------------------------------------
# init-crashloop / init-failed
# --------------------------------------------------------------------------


def init_pod(
    state: Doc,
    *,
    last: Doc | None = None,
    restarts: int = 0,
    policy: str = "Always",
    phase: str = "Pending",
) -> Doc:
    return pod_doc(
        init=[cspec("init-db", command=["/bin/migrate", "--to=latest"]), cspec("init-cache")],
        init_statuses=[
            cstatus("init-db", state, last=last, restarts=restarts),
            cstatus("init-cache", waiting("PodInitializing")),
        ],
        statuses=[cstatus("web", waiting("PodInitializing"))],
        restart_policy=policy,
        phase=phase,
        conditions=[cond("PodScheduled", True), cond("Initialized", False)],
    )


def test_init_crashloop_with_the_backoff_from_the_message() -> None:
    msg = f"back-off 20s restarting failed container=init-db pod=web-7c9d8b6f4d-x2lqp_shop({UID})"
    doc = init_pod(
        waiting("CrashLoopBackOff", msg),
        last=terminated(1, finished_ago=5, message="migration 42 failed: relation exists"),
        restarts=2,
    )
    logs = {
        "init-db": ContainerLogs(
            previous=("applying 42", "ERROR: relation exists"), previous_attempt=1
        )
    }
    f = one(run(doc, logs=logs), "init-crashloop")
    assert f.severity == "error"
    assert "(1 of 2) is in Init:CrashLoopBackOff" in f.summary
    assert ev(f, "last exit code").value == "1 (application error)"
    assert ev(f, "back-off step").value == "20s (from kubelet's waiting message)"
    assert ev(f, "next restart").value == "2025-03-04T12:00:15Z (in 15s)"
    assert ev(f, "last termination message").value == "migration 42 failed: relation exists"
    assert (
        ev(f, "last 2 log lines of init-db (attempt 1)").value
        == "applying 42\nERROR: relation exists"
    )
    assert "kubectl -n shop logs web-7c9d8b6f4d-x2lqp -c init-db --previous" in f.next_steps


@pytest.mark.parametrize(
    ("state", "restarts", "severity"),
    [
        (running(1), 4, "error"),
        (waiting("PodInitializing"), 4, "error"),
        (running(1), 1, "warning"),
    ],
)
def test_init_crashloop_between_failures_while_it_runs_again(
    state: Doc, restarts: int, severity: str
) -> None:
    # kubectl shows Init:0/2 while the retry runs; lastState still holds the failure.
    doc = init_pod(state, last=terminated(1, finished_ago=2), restarts=restarts)
    logs = {"init-db": ContainerLogs(previous=("ERROR: relation exists",), previous_attempt=3)}
    f = one(run(doc, logs=logs), "init-crashloop")
    assert f.severity == severity
    assert "(1 of 2) failed and is being retried" in f.summary
    assert ev(f, "last exit code").value == "1 (application error)"
    assert ev(f, "last 1 log line of init-db (attempt 3)").value == "ERROR: relation exists"


def test_an_old_init_failure_before_a_long_successful_run_is_not_a_loop() -> None:
    doc = init_pod(running(1000), last=terminated(1, finished_ago=1001), restarts=1)
    assert [f.rule for f in run(doc) if f.rule == "init-crashloop"] == []


def test_an_init_container_that_failed_again_is_a_crash_loop_not_a_first_failure() -> None:
    # The real kubelet shows Init:Error most of the time between two tries of
    # a failing init container; its restart count is what tells the loop.
    doc = init_pod(
        terminated(1, finished_ago=3, message="schema version 7 not found"),
        last=terminated(1, finished_ago=14),
        restarts=2,
    )
    found = run(doc)
    assert [f.rule for f in found if f.rule.startswith("init-")] == ["init-crashloop"]
    f = one(found, "init-crashloop")
    assert f.severity == "error"
    assert "(1 of 2) failed again and waits for kubelet's next try" in f.summary
    assert ev(f, "restart count").value == "2"
    # The first failure, before any restart, is still a failure, not a loop.
    first = run(init_pod(terminated(1, finished_ago=3)))
    assert [f.rule for f in first if f.rule.startswith("init-")] == ["init-failed"]


def test_init_failed_under_restart_policy_never_is_for_good() -> None:
    doc = init_pod(terminated(3, finished_ago=120), policy="Never", phase="Failed")
    f = one(run(doc), "init-failed")
    assert f.severity == "critical"
    assert "Init:Error" in f.summary
    assert "Failed for good" in f.summary
    assert ev(f, "exit code").value == "3 (application-specific exit code 3)"
    assert ev(f, "command").value == "/bin/migrate --to=latest"


def test_init_failed_without_reason_shows_init_exit_code() -> None:
    doc = init_pod(terminated(2, reason="", finished_ago=1))
    f = one(run(doc), "init-failed")
    assert f.severity == "error"
    assert "Init:ExitCode:2" in f.summary
    assert "kubelet retries it" in f.summary


def test_completed_init_containers_raise_nothing() -> None:
    doc = pod_doc(
        init=[cspec("init-db")],
        init_statuses=[cstatus("init-db", terminated(0, finished_ago=3000, label="i"))],
        statuses=[cstatus("web", running(2990))],
    )
    assert run(doc) == []


# --------------------------------------------------------------------------
# crashloop
# --------------------------------------------------------------------------


def crash_pod(
    message: str | None,
    *,
    restarts: int,
    finished_ago: float,
    exit_code: int = 1,
    reason: str | None = None,
    **kw: Any,
) -> Doc:
    return pod_doc(
        containers=[cspec("web", limits={"memory": "256Mi"})],
        statuses=[
            cstatus(
                "web",
                waiting("CrashLoopBackOff", message),
                last=terminated(exit_code, reason=reason, finished_ago=finished_ago, **kw),
                restarts=restarts,
                ready=False,
            )
        ],
    )


def test_crashloop_backoff_step_and_next_try_from_the_message() -> None:
    msg = f"back-off 40s restarting failed container=web pod=web-7c9d8b6f4d-x2lqp_shop({UID})"
    doc = crash_pod(msg, restarts=3, finished_ago=20)
    events = [
        event(
            "BackOff",
            "Back-off restarting failed container web in pod web-7c9d8b6f4d-x2lqp_shop",
            container="web",
            count=7,
            first_ago=240,
            last_ago=20,
        )
    ]
    logs = {
        "web": ContainerLogs(previous=("listening on :8080", "panic: nil map"), previous_attempt=2)
    }
    f = one(run(doc, events, logs=logs), "crashloop")
    assert f.severity == "error"
    assert f.container == "web"
    assert ev(f, "back-off step").value == "40s (from kubelet's waiting message)"
    # finishedAt 11:59:40 + 40 s
    assert ev(f, "next restart").value == "2025-03-04T12:00:20Z (in 20s)"
    assert "next restart in 20s (back-off 40s)" in f.summary
    assert "3 restarts" in f.summary
    assert ev(f, "restart count").value == "3"
    assert ev(f, "last 2 log lines of web (attempt 2)").value.endswith("panic: nil map")
    assert ev(f, "BackOff (x7, 20s ago)").kind == "event"
    assert f.since == ago(240)
    assert "/v1/pods/shop/web-7c9d8b6f4d-x2lqp/logs?container=web&previous=true" in f.next_steps
    assert f"crictl inspect {rid('last')}" in f.next_steps


def test_crashloop_backoff_computed_from_restart_count_without_message() -> None:
    doc = crash_pod(None, restarts=4, finished_ago=60)
    f = one(run(doc), "crashloop")
    assert ev(f, "back-off step").value == "1m20s (computed from 4 restarts: 10s doubling up to 5m)"
    # finishedAt 11:59:00 + 80 s
    assert ev(f, "next restart").value == "2025-03-04T12:00:20Z (in 20s)"


def test_crashloop_next_try_already_due() -> None:
    msg = "back-off 5m0s restarting failed container=web pod=web_shop(x)"
    f = one(run(crash_pod(msg, restarts=9, finished_ago=310)), "crashloop")
    assert (
        ev(f, "next restart").value == "2025-03-04T11:59:50Z (due 10s ago: on kubelet's next sync)"
    )
    assert "next restart due now" in f.summary


def test_crashloop_exit_zero_under_restart_policy_always() -> None:
    doc = pod_doc(
        containers=[cspec("web"), cspec("helper", command=["sh", "-c", "echo ready"])],
        statuses=[
            cstatus("web", running(3000)),
            cstatus(
                "helper",
                waiting(
                    "CrashLoopBackOff", "back-off 2m40s restarting failed container=helper pod=x"
                ),
                last=terminated(0, finished_ago=10, label="helper"),
                restarts=5,
            ),
        ],
    )
    f = one(run(doc), "crashloop")
    assert f.container == "helper"
    assert ev(f, "last exit code").value == "0 (exited successfully, but restartPolicy is Always)"
    assert "needs a command that does not return" in f.cause
    assert ev(f, "back-off step").value == "2m40s (from kubelet's waiting message)"


def test_crashloop_of_a_native_sidecar() -> None:
    doc = pod_doc(
        init=[cspec("log-shipper", sidecar=True)],
        init_statuses=[
            cstatus(
                "log-shipper",
                waiting(
                    "CrashLoopBackOff", "back-off 10s restarting failed container=log-shipper pod=x"
                ),
                last=terminated(127, finished_ago=4, label="ls"),
                restarts=1,
                started=False,
            )
        ],
        statuses=[cstatus("web", running(3000))],
    )
    f = one(run(doc), "crashloop")
    assert f.summary.startswith(
        "sidecar log-shipper of shop/web-7c9d8b6f4d-x2lqp is in CrashLoopBackOff"
    )
    assert ev(f, "last exit code").value == "127 (command not found)"
    assert any("jsonpath" in s and "initContainers" in s for s in f.next_steps)


def test_crashloop_after_liveness_kills_blames_the_probe() -> None:
    doc = crash_pod(
        "back-off 20s restarting failed container=web pod=x",
        restarts=2,
        finished_ago=3,
        exit_code=137,
    )
    events = [
        event(
            "Unhealthy",
            "Liveness probe failed: HTTP probe failed with statuscode: 500",
            container="web",
            count=6,
        ),
        event(
            "Killing",
            "Container web failed liveness probe, will be restarted",
            container="web",
            count=2,
            type_="Normal",
        ),
    ]
    f = one(run(doc, events), "crashloop")
    assert ev(f, "last exit code").value == "137 (SIGKILL: killed from outside)"
    assert "liveness probe failed" in f.cause


def test_running_again_after_a_recent_exit_is_a_warning() -> None:
    doc = pod_doc(
        statuses=[cstatus("web", running(20), last=terminated(2, finished_ago=21), restarts=1)],
    )
    f = one(run(doc), "crashloop")
    assert f.severity == "warning"
    assert "runs again after a recent exit" in f.summary


def test_an_old_exit_is_not_a_crash_loop() -> None:
    doc = pod_doc(
        statuses=[cstatus("web", running(3000), last=terminated(2, finished_ago=3001), restarts=1)],
    )
    assert run(doc) == []


def test_a_failed_job_container_is_container_failed_not_crashloop() -> None:
    doc = pod_doc(
        containers=[cspec("job")],
        statuses=[cstatus("job", terminated(1, finished_ago=50, label="job"))],
        restart_policy="Never",
        phase="Failed",
    )
    found = run(doc)
    assert rules(found) == ["container-failed"]
    assert found[0].severity == "critical"


# --------------------------------------------------------------------------
# Exit codes and backoff arithmetic
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "meaning", "signal"),
    [
        (0, "exited successfully, but restartPolicy is Always", None),
        (1, "application error", None),
        (2, "usage or shell error", None),
        (126, "command not executable", None),
        (127, "command not found", None),
        (128, "invalid exit argument or start failure", None),
        (130, "SIGINT: killed by signal 2", "SIGINT"),
        (137, "SIGKILL: killed from outside", "SIGKILL"),
        (139, "SIGSEGV: killed by signal 11", "SIGSEGV"),
        (143, "SIGTERM: killed by signal 15", "SIGTERM"),
        (255, "exit status 255 (-1)", None),
        (42, "application-specific exit code 42", None),
    ],
)
def test_exit_code_table(code: int, meaning: str, signal: str | None) -> None:
    m = decode_exit(code)
    assert m.meaning == meaning
    assert m.signal_name == signal


def test_sigkill_is_an_oom_kill_by_reason_or_by_cgroup_counter() -> None:
    assert decode_exit(137, reason="OOMKilled").meaning == "SIGKILL: OOM-killed"
    assert decode_exit(137, reason="Error", oom_kills=1).meaning == "SIGKILL: OOM-killed"
    assert decode_exit(137, reason="Error", oom_kills=0).meaning == "SIGKILL: killed from outside"
    assert decode_exit(1, reason="OOMKilled").meaning == "exited 1 after an OOM kill"


def test_start_error_128_and_exit_zero_under_never() -> None:
    assert decode_exit(128, reason="StartError").meaning == "the process could not be started"
    assert decode_exit(0, restart_policy="Never").meaning == "completed successfully"
    assert decode_exit(0, signal=15).signal_name == "SIGTERM"


@pytest.mark.parametrize(
    ("restarts", "seconds"),
    [(0, 0), (1, 10), (2, 20), (3, 40), (4, 80), (5, 160), (6, 300), (7, 300), (500, 300)],
)
def test_backoff_doubles_from_10s_to_300s(restarts: int, seconds: int) -> None:
    assert backoff_for_restarts(restarts) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("40s", 40), ("2m40s", 160), ("5m0s", 300), ("1h0m0s", 3600), ("1.5s", 1.5), ("300ms", 0.3)],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "40", "s40", "4 0s", "forty"])
def test_bad_go_durations(text: str) -> None:
    assert parse_go_duration(text) is None


def test_backoff_message_spellings() -> None:
    assert backoff_from_message("Back-off 1m20s restarting failed container=web pod=w_s(u)") == (
        timedelta(seconds=80)
    )
    assert backoff_from_message("back-off 10s restarting failed container=web") == timedelta(
        seconds=10
    )
    assert backoff_from_message('Back-off pulling image "x"') is None


# --------------------------------------------------------------------------
# oom-killed
# --------------------------------------------------------------------------


def test_oom_killed_with_limit_and_cgroup_counter() -> None:
    doc = crash_pod(
        "back-off 20s restarting failed container=web pod=x",
        restarts=2,
        finished_ago=8,
        exit_code=137,
        reason="OOMKilled",
    )
    found = run(doc, oom_kills={"web": 3})
    f = one(found, "oom-killed")
    assert f.severity == "error"
    assert ev(f, "memory limit").value == "256Mi"
    assert ev(f, "cgroup OOM kills (current instance)").value == "3"
    assert ev(f, "last exit code").value == "137 (SIGKILL: OOM-killed)"
    assert "256Mi" in f.cause
    assert (
        "kubectl -n shop set resources deployment/web -c web --limits=memory=<more>" in f.next_steps
    )
    # the loop is reported too, with the OOM kill as its exit
    assert ev(one(found, "crashloop"), "last exit code").value == "137 (SIGKILL: OOM-killed)"


def test_oom_counter_without_oomkilled_reason_means_a_child_was_killed() -> None:
    doc = pod_doc(statuses=[cstatus("web", running(3000))])
    f = one(run(doc, oom_kills={"web": 2}), "oom-killed")
    assert f.severity == "warning"
    assert "main process survived" in f.summary


def test_no_oom_finding_with_a_zero_counter() -> None:
    assert run(pod_doc(statuses=[cstatus("web", running(3000))]), oom_kills={"web": 0}) == []


# --------------------------------------------------------------------------
# image-pull
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "message", "expected"),
    [
        (
            "ErrImagePull",
            'rpc error: code = NotFound desc = failed to pull and unpack image "docker.io/library/'
            'nginx:nope": failed to resolve reference "docker.io/library/nginx:nope": '
            "docker.io/library/nginx:nope: not found",
            "not-found",
        ),
        (
            "ErrImagePull",
            "failed to pull and unpack image "
            '"registry.example.com/shop/web:1.4": failed to resolve '
            'reference "registry.example.com/shop/web:1.4": failed to authorize: failed to fetch '
            "anonymous token: unexpected status from GET request to "
            "https://registry.example.com/token: 401 Unauthorized",
            "unauthorized",
        ),
        (
            "ErrImagePull",
            'failed to do request: Head "https://registry.example.com/v2/shop/web/manifests/1.4": '
            "dial tcp: lookup registry.example.com on 10.96.0.10:53: no such host",
            "network",
        ),
        (
            "ErrImagePull",
            'failed to do request: Head "https://10.0.0.5:5000/v2/web/manifests/1": dial tcp '
            "10.0.0.5:5000: i/o timeout",
            "network",
        ),
        (
            "ErrImagePull",
            "pull access denied, repository does not exist or may require authorization: server "
            "message: insufficient_scope: authorization failed",
            "not-found",
        ),
        (
            "ErrImagePull",
            "toomanyrequests: You have reached your pull rate limit.",
            "rate-limited",
        ),
        (
            "ErrImageNeverPull",
            'Container image "web:dev" is not present with pull policy of Never',
            "policy",
        ),
        (
            "InvalidImageName",
            'Failed to apply default image tag "Web:1": couldn\'t parse image',
            "invalid-name",
        ),
        ("ErrImagePull", "something odd happened", "unknown"),
    ],
)
def test_pull_classification(reason: str, message: str, expected: str) -> None:
    assert classify_pull(reason, [message]) == expected


@pytest.mark.parametrize(
    ("image", "registry"),
    [
        ("nginx", "docker.io"),
        ("library/nginx:1.27", "docker.io"),
        ("registry.example.com/shop/web:1.4", "registry.example.com"),
        ("localhost:5000/web", "localhost:5000"),
        ("localhost/web", "localhost"),
    ],
)
def test_registry_of(image: str, registry: str) -> None:
    assert registry_of(image) == registry


def test_image_pull_backoff_classified_from_the_failed_event() -> None:
    image = "registry.example.com/shop/web:1.4"
    doc = pod_doc(
        statuses=[
            cstatus(
                "web", waiting("ImagePullBackOff", f'Back-off pulling image "{image}"'), ready=False
            )
        ],
        phase="Pending",
    )
    events = [
        event("Pulling", f'Pulling image "{image}"', container="web", type_="Normal", count=4),
        event(
            "Failed",
            f'Failed to pull image "{image}": rpc error: code = Unknown desc = failed to pull and '
            "unpack image: failed to resolve reference: unexpected status: 401 Unauthorized",
            container="web",
            count=4,
            first_ago=300,
        ),
        event("BackOff", f'Back-off pulling image "{image}"', container="web", count=12),
    ]
    f = one(run(doc, events, images_present={image: False}), "image-pull")
    assert f.severity == "error"
    assert ev(f, "failure class").value == "unauthorized"
    assert ev(f, "image on this node").value == "absent (CRI ImageStatus)"
    assert ev(f, "imagePullSecrets").value == "none"
    assert "no imagePullSecrets" in f.cause
    assert f"crictl pull {image}" in f.next_steps
    assert f.since == ago(300)
    assert "ImagePullBackOff (unauthorized)" in f.summary


def test_image_pull_notes_an_image_the_node_already_holds() -> None:
    image = "registry.example.com/shop/web:latest"
    doc = pod_doc(
        containers=[cspec("web", image=image, pull_policy="Always")],
        statuses=[
            cstatus(
                "web",
                waiting("ErrImagePull", "dial tcp: lookup registry.example.com: no such host"),
                image=image,
            )
        ],
        spec_extra={"imagePullSecrets": [{"name": "regcred"}]},
    )
    f = one(run(doc, images_present={image: True}), "image-pull")
    assert ev(f, "failure class").value == "network"
    assert "already holds the image" in f.cause
    assert ev(f, "imagePullSecrets").value == "regcred"
    assert "resolve" in f.cause


def test_err_image_never_pull_is_policy_in_an_init_container() -> None:
    doc = pod_doc(
        init=[cspec("seed", image="seed:dev", pull_policy="Never")],
        init_statuses=[
            cstatus(
                "seed",
                waiting(
                    "ErrImageNeverPull",
                    'Container image "seed:dev" is not present with pull policy of Never',
                ),
            )
        ],
        statuses=[cstatus("web", waiting("PodInitializing"))],
        phase="Pending",
        conditions=[cond("PodScheduled", True), cond("Initialized", False)],
    )
    f = one(run(doc), "image-pull")
    assert f.container == "seed"
    assert ev(f, "failure class").value == "policy"
    assert "crictl images seed:dev" in f.next_steps


# --------------------------------------------------------------------------
# config-error / start-error
# --------------------------------------------------------------------------


def test_config_error_names_the_missing_configmap() -> None:
    doc = pod_doc(
        containers=[
            cspec(
                "web",
                env=[
                    {
                        "name": "MODE",
                        "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "mode"}},
                    }
                ],
            )
        ],
        statuses=[
            cstatus(
                "web", waiting("CreateContainerConfigError", 'configmap "app-config" not found')
            )
        ],
        phase="Pending",
    )
    f = one(run(doc), "config-error")
    assert f.summary == (
        "container web of shop/web-7c9d8b6f4d-x2lqp is missing ConfigMap app-config "
        "(CreateContainerConfigError)"
    )
    assert ev(f, "missing").value == "ConfigMap app-config"
    assert ev(f, "referenced by").value == "env MODE <- ConfigMap app-config key mode"
    assert "kubectl -n shop get configmap app-config" in f.next_steps
    assert "does not exist in namespace shop" in f.cause


def test_config_error_names_the_missing_secret_key() -> None:
    doc = pod_doc(
        namespace="default",
        containers=[
            cspec(
                "web",
                env=[
                    {
                        "name": "DB_URL",
                        "valueFrom": {"secretKeyRef": {"name": "creds", "key": "db-url"}},
                    },
                    {
                        "name": "DB_USER",
                        "valueFrom": {"secretKeyRef": {"name": "creds", "key": "user"}},
                    },
                ],
            )
        ],
        statuses=[
            cstatus(
                "web",
                waiting(
                    "CreateContainerConfigError", "couldn't find key db-url in Secret default/creds"
                ),
            )
        ],
    )
    f = one(run(doc), "config-error")
    assert ev(f, "missing").value == "key db-url of Secret default/creds"
    assert [e.value for e in f.evidence if e.label == "referenced by"] == [
        "env DB_URL <- Secret creds key db-url"
    ]
    assert "kubectl -n default describe secret creds" in f.next_steps


@pytest.mark.parametrize(
    ("message", "kind", "name", "key"),
    [
        ('configmap "app-config" not found', "ConfigMap", "app-config", None),
        ('secret "creds" not found', "Secret", "creds", None),
        ("couldn't find key db-url in Secret default/creds", "Secret", "creds", "db-url"),
        ("couldn't find key mode in ConfigMap shop/app-config", "ConfigMap", "app-config", "mode"),
        (
            'MountVolume.SetUp failed for volume "cfg" : configmap "app-config" not found',
            "ConfigMap",
            "app-config",
            None,
        ),
        ("container has runAsNonRoot and image will run as root", "securityContext", None, None),
    ],
)
def test_missing_config_messages(
    message: str, kind: str, name: str | None, key: str | None
) -> None:
    m = missing_config(message)
    assert m is not None
    assert (m.kind, m.name, m.key) == (kind, name, key)


def test_start_error_executable_not_found() -> None:
    msg = (
        "failed to create containerd task: failed to create shim task: OCI runtime create failed: "
        'runc create failed: unable to start container process: exec: "pyhton": executable file '
        "not found in $PATH: unknown"
    )
    doc = pod_doc(
        containers=[cspec("web", command=["pyhton", "app.py"])],
        statuses=[
            cstatus(
                "web",
                waiting("CrashLoopBackOff", "back-off 10s restarting failed container=web pod=x"),
                last=terminated(128, reason="StartError", finished_ago=3, ran=0, message=msg),
                restarts=1,
            )
        ],
    )
    found = run(doc)
    f = one(found, "start-error")
    assert f.summary.endswith("cannot be started (StartError, not-found): pyhton")
    assert ev(f, "exit code").value == "128 (the process never ran)"
    assert ev(f, "command").value == "pyhton app.py"
    assert "$PATH" in f.cause
    assert (
        ev(one(found, "crashloop"), "last exit code").value
        == "128 (the process could not be started)"
    )


@pytest.mark.parametrize(
    ("message", "cls"),
    [
        ('exec: "/app/run.sh": permission denied: unknown', "permission"),
        ("exec /app/server: exec format error", "wrong-arch"),
        ('exec: "/entry.sh": stat /entry.sh: no such file or directory: unknown', "no-such-file"),
        (
            'failed to reserve container name "web_x": name "web_x" is reserved for "abc"',
            "name-conflict",
        ),
        (
            'error mounting "/var/lib/kubelet/pods/x/volumes/cfg" to rootfs: not a directory',
            "mount",
        ),
        ("something else", "unknown"),
    ],
)
def test_start_error_classes(message: str, cls: str) -> None:
    assert classify_start("RunContainerError", message) == cls


def test_create_container_error_is_a_start_error() -> None:
    doc = pod_doc(
        statuses=[
            cstatus(
                "web",
                waiting(
                    "CreateContainerError",
                    'failed to reserve container name "web_x": name "web_x" is reserved for "abc"',
                ),
            )
        ],
    )
    f = one(run(doc), "start-error")
    assert ev(f, "failure class").value == "name-conflict"


# --------------------------------------------------------------------------
# not-ready
# --------------------------------------------------------------------------

READINESS = {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 5, "failureThreshold": 3}


def test_running_but_not_ready_with_failing_readiness_probe() -> None:
    doc = pod_doc(
        containers=[cspec("web", readiness=READINESS)],
        statuses=[cstatus("web", running(300), ready=False)],
        conditions=[cond("PodScheduled", True), cond("Initialized", True), cond("Ready", False)],
    )
    events = [
        event(
            "Unhealthy",
            'Readiness probe failed: Get "http://10.244.1.9:8080/ready": '
            "dial tcp 10.244.1.9:8080: connect: connection refused",
            container="web",
            count=58,
        )
    ]
    f = one(run(doc, events), "not-ready")
    assert f.severity == "warning"
    assert "the pod shows 0/1" in f.summary
    assert ev(f, "readiness probe").value.startswith("http-get http://:8080/ready")
    assert ev(f, "Unhealthy (x58, 10s ago)").value.startswith("Readiness probe failed")
    assert "readiness probe keeps failing" in f.cause


def test_not_ready_only_after_the_threshold() -> None:
    doc = pod_doc(
        containers=[cspec("web", readiness=READINESS)],
        statuses=[cstatus("web", running(20), ready=False)],
    )
    assert run(doc) == []


def test_a_finished_helper_under_never_leaves_the_pod_one_of_two() -> None:
    doc = pod_doc(
        containers=[cspec("web"), cspec("ambassador", command=["sh", "-c", "echo proxy"])],
        statuses=[
            cstatus("ambassador", terminated(0, finished_ago=600, label="amb")),
            cstatus("web", running(3000)),
        ],
        restart_policy="Never",
    )
    f = one(run(doc), "not-ready")
    assert f.container == "ambassador"
    assert "the pod shows 1/2" in f.summary
    assert "restartPolicy Never will not restart it" in f.summary


# --------------------------------------------------------------------------
# stuck-creating
# --------------------------------------------------------------------------


def test_container_creating_with_a_sandbox_failure() -> None:
    doc = pod_doc(
        statuses=[cstatus("web", waiting("ContainerCreating"))],
        phase="Pending",
        created=400,
        conditions=[cond("PodScheduled", True, 400), cond("Initialized", True, 400)],
    )
    events = [
        event(
            "FailedCreatePodSandBox",
            "Failed to create pod sandbox: rpc error: code = Unknown desc = failed to setup "
            'network for sandbox "abc": plugin type="bridge" failed (add): failed to allocate '
            "for range 0",
            count=9,
        )
    ]
    f = one(run(doc, events), "stuck-creating")
    assert f.severity == "warning"
    assert "has not been created after 6m40s" in f.summary
    assert "ContainerCreating" in f.summary
    assert "CNI" in f.cause
    assert ev(f, "FailedCreatePodSandBox (x9, 10s ago)").kind == "event"


def test_init_zero_of_one_stuck_on_a_missing_configmap_volume() -> None:
    doc = pod_doc(
        init=[cspec("init-db")],
        init_statuses=[cstatus("init-db", waiting("PodInitializing"))],
        statuses=[cstatus("web", waiting("PodInitializing"))],
        phase="Pending",
        created=900,
        conditions=[cond("PodScheduled", True, 900), cond("Initialized", False, 900)],
    )
    events = [
        event(
            "FailedMount",
            'MountVolume.SetUp failed for volume "cfg" : configmap "app-config" not found',
            count=12,
        )
    ]
    f = one(run(doc, events), "stuck-creating")
    assert f.severity == "error"
    assert f.container == "init-db"
    assert "Init:0/1" in f.summary
    assert "ConfigMap app-config does not exist" in f.cause


def test_a_pod_scheduled_long_ago_without_any_status() -> None:
    doc = pod_doc(phase="Pending", created=300, conditions=[cond("PodScheduled", True, 300)])
    f = one(run(doc), "stuck-creating")
    assert ev(f, "state").value == "no status reported yet"


# --------------------------------------------------------------------------
# terminating-stuck, evicted, container-status-unknown, unschedulable
# --------------------------------------------------------------------------


def deleting(seconds_past: float, finalizers: list[str] | None = None) -> Doc:
    meta: Doc = {"deletionTimestamp": stamp(seconds_past), "deletionGracePeriodSeconds": 30}
    if finalizers:
        meta["finalizers"] = finalizers
    return pod_doc(meta=meta, statuses=[cstatus("web", running(3000))])


def test_terminating_held_by_a_finalizer() -> None:
    f = one(run(deleting(120, ["example.com/cleanup"])), "terminating-stuck")
    assert f.severity == "warning"
    assert f.since == ago(150)
    assert "grace period ran out 2m ago" in f.summary
    assert ev(f, "finalizers").value == "example.com/cleanup"
    assert "example.com/cleanup" in f.cause


def test_terminating_with_containers_still_running_after_ten_minutes() -> None:
    f = one(run(deleting(900)), "terminating-stuck")
    assert f.severity == "error"
    assert "Containers still run" in f.cause


def test_terminating_within_the_grace_period_is_normal() -> None:
    assert rules(run(deleting(10))) == []
    assert rules(run(deleting(-20))) == []


def test_evicted_for_memory_pressure() -> None:
    doc = pod_doc(
        phase="Failed",
        status_extra={
            "reason": "Evicted",
            "message": "The node was low on resource: memory. Threshold quantity: 100Mi, "
            "available: 61Mi. Container web was using 1203Mi, request is 256Mi, has larger "
            "consumption of memory. ",
        },
        statuses=[
            cstatus("web", terminated(137, reason="ContainerStatusUnknown", finished_ago=100))
        ],
    )
    found = run(doc)
    f = one(found, "evicted")
    assert f.severity == "error"
    assert "node low on memory" in f.summary
    assert "ReplicaSet web-7c9d8b6f4d creates a replacement" in f.summary
    assert ev(f, "usage of web").value == "1203Mi (request 256Mi)"
    assert f"kubectl describe node {NODE}" in f.next_steps


def test_container_status_unknown() -> None:
    doc = pod_doc(
        statuses=[
            cstatus(
                "web",
                terminated(
                    137,
                    reason="ContainerStatusUnknown",
                    message="The container could not be located when the pod was terminated",
                    finished_ago=60,
                ),
            )
        ],
        phase="Running",
    )
    f = one(run(doc), "container-status-unknown")
    assert f.container == "web"
    assert ev(f, "exit code").value.startswith("137 (set by kubelet")


def test_unschedulable_pod_from_fixture() -> None:
    doc = json.loads((FIXTURES / "pods" / "pending-unschedulable.json").read_text())
    f = one(run(doc), "unschedulable")
    assert f.severity == "error"  # pending since 10:20, now 12:00
    assert "Insufficient memory" in f.summary
    assert (
        run(doc, thresholds=Thresholds(unschedulable_error=timedelta(hours=3)))[0].severity
        == "warning"
    )


# --------------------------------------------------------------------------
# Node view: mismatches, ports, volumes
# --------------------------------------------------------------------------


def sandbox(label: str = "sb", *, created: float = 3590) -> Sandbox:
    return Sandbox(
        id=rid(label),
        pod=PodRef(name="web-7c9d8b6f4d-x2lqp", namespace="shop", uid=UID),
        state=SandboxState.READY,
        attempt=0,
        created_at=ago(created),
        runtime_handler="",
        pause_pid=4100,
    )


def ctr(
    cid: str,
    name: str,
    sb: Sandbox,
    *,
    state: ContainerState = ContainerState.RUNNING,
    started: float = 3000,
    finished: float | None = None,
    exit_code: int | None = None,
    pid: int | None = 5001,
    mounts: tuple[Mount, ...] = (),
) -> Container:
    exited = state is ContainerState.EXITED
    return Container(
        id=cid,
        name=name,
        sandbox_id=sb.id,
        pod=sb.pod,
        state=state,
        attempt=0,
        image=f"registry.example.com/shop/{name}:1.4",
        image_ref="sha256:" + rid(name),
        created_at=ago(started + 1),
        started_at=ago(started),
        finished_at=ago(finished) if exited and finished is not None else None,
        exit_code=exit_code if exited else None,
        reason="Error" if exited else None,
        pid=pid if not exited else None,
        mounts=mounts,
    )


def view_input(doc: Doc, containers: list[Container], sb: Sandbox, **kw: Any) -> DiagnosisInput:
    pod = pod_from_dict(doc)
    view = build_pod_view(
        {pod.uid: pod},
        {sb.id: sb},
        {c.id: c for c in containers},
        namespace=pod.namespace,
        name=pod.name,
        node_name=NODE,
        api_synced=True,
        now=NOW,
    )
    assert view is not None
    return DiagnosisInput(pod=pod, view=view, node_name=NODE, now=NOW, **kw)


def test_every_mismatch_becomes_a_finding() -> None:
    sb = sandbox()
    status = cstatus("web", running(3000))
    cid = status["containerID"].removeprefix("containerd://")
    doc = pod_doc(statuses=[status])
    inp = view_input(
        doc, [ctr(cid, "web", sb, state=ContainerState.EXITED, finished=120, exit_code=137)], sb
    )
    assert inp.view is not None
    kinds = {m.kind for m in inp.view.mismatches}
    assert kinds == {"api-running-runtime-exited"}
    f = one(diagnose(inp), "mismatch-api-running-runtime-exited")
    assert f.severity == "warning"
    assert f.container == "web"
    assert f.since == ago(120)
    assert ev(f, "exit_code").value == "137"
    assert ev(f, "exit_code").kind == "runtime"
    assert f"crictl inspect {cid}" in f.next_steps
    assert f"/v1/containers/{cid}" in f.next_steps


def test_volume_disagreement_is_reported_once_as_volume_not_shared() -> None:
    sb = sandbox()
    web_s = cstatus("web", running(3000))
    ship_s = cstatus("log-shipper", running(3000))
    cid = {s["name"]: s["containerID"].removeprefix("containerd://") for s in (web_s, ship_s)}
    a = f"/var/lib/kubelet/pods/{UID}/volumes/kubernetes.io~empty-dir/logs"
    b = "/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/x/volumes/logs"
    doc = pod_doc(
        containers=[
            cspec("web", mounts=[{"name": "logs", "mountPath": "/var/log/app"}]),
            cspec("log-shipper", mounts=[{"name": "logs", "mountPath": "/logs", "readOnly": True}]),
        ],
        volumes=[{"name": "logs", "emptyDir": {}}],
        statuses=[ship_s, web_s],
    )
    containers = [
        ctr(cid["web"], "web", sb, mounts=(Mount("/var/log/app", a),)),
        ctr(cid["log-shipper"], "log-shipper", sb, pid=5002, mounts=(Mount("/logs", b),)),
    ]
    found = diagnose(view_input(doc, containers, sb))
    assert rules(found) == ["volume-not-shared"]
    f = found[0]
    assert ev(f, "host path of web").value == a
    assert ev(f, "host path of log-shipper").value == b
    assert ev(f, "log-shipper mounts it at").value == "/logs (ro)"


def test_volume_not_shared_from_the_spec_alone() -> None:
    doc = pod_doc(
        containers=[
            cspec(
                "app",
                command=["sh", "-c", "while true; do date >> /var/log/app.log; sleep 5; done"],
                mounts=[{"name": "logs", "mountPath": "/var/log"}],
            ),
            cspec("sidecar", command=["sh", "-c", "tail -n+1 -F /var/log/app.log"]),
        ],
        volumes=[{"name": "logs", "emptyDir": {}}],
        statuses=[cstatus("app", running(3000)), cstatus("sidecar", running(3000))],
    )
    f = one(run(doc), "volume-not-shared")
    assert f.container == "sidecar"
    assert "uses /var/log/app.log, which app has on volume logs (/var/log)" in f.summary
    assert "add a volumeMount of logs at /var/log to sidecar" in f.next_steps


def test_volume_shared_properly_is_quiet() -> None:
    doc = pod_doc(
        containers=[
            cspec(
                "app",
                command=["sh", "-c", "while true; do date >> /var/log/app.log; sleep 5; done"],
                mounts=[{"name": "logs", "mountPath": "/var/log"}],
            ),
            cspec(
                "sidecar",
                command=["sh", "-c", "tail -F /var/log/app.log"],
                mounts=[{"name": "logs", "mountPath": "/var/log"}],
            ),
        ],
        volumes=[{"name": "logs", "emptyDir": {}}],
        statuses=[cstatus("app", running(3000)), cstatus("sidecar", running(3000))],
    )
    assert run(doc) == []


def ambassador_pod(started_ago: float = 300) -> Doc:
    return pod_doc(
        containers=[cspec("app"), cspec("ambassador", ports=[8080])],
        statuses=[
            cstatus("ambassador", running(started_ago)),
            cstatus("app", running(started_ago)),
        ],
    )


def test_port_not_listening_for_an_ambassador() -> None:
    f = one(run(ambassador_pod(), listening={8080: False, 80: True}), "port-not-listening")
    assert f.container == "ambassador"
    assert (
        "declares port 8080 but nothing listens on it in the pod's network namespace" in f.summary
    )
    assert ev(f, "listening in the pod's network namespace").value == "80"
    assert "(the pod listens on 80)" in f.cause


@pytest.mark.parametrize(
    ("listening", "started_ago"),
    [
        (None, 300),  # not known
        ({8080: True}, 300),  # listening
        ({8080: False}, 10),  # just started
        ({}, 300),  # the caller did not check that port
    ],
)
def test_port_not_listening_does_not_fire(
    listening: Mapping[int, bool] | None, started_ago: float
) -> None:
    assert run(ambassador_pod(started_ago), listening=listening) == []


def test_runtime_only_pod_without_api_says_so() -> None:
    sb = sandbox()
    c = ctr(rid("orphan"), "web", sb)
    views = build_pod_views({}, {sb.id: sb}, {c.id: c}, node_name=NODE, api_synced=False, now=NOW)
    inp = DiagnosisInput(view=views[0], node_name=NODE, now=NOW, api_available=False)
    f = one(diagnose(inp), "api-unavailable")
    assert f.severity == "info"


# --------------------------------------------------------------------------
# Ordering and shape
# --------------------------------------------------------------------------


def test_findings_are_sorted_most_severe_first_and_stable() -> None:
    doc = pod_doc(
        containers=[cspec("web", readiness=READINESS), cspec("worker", limits={"memory": "64Mi"})],
        statuses=[
            cstatus("web", running(300), ready=False),
            cstatus(
                "worker",
                waiting(
                    "CrashLoopBackOff", "back-off 20s restarting failed container=worker pod=x"
                ),
                last=terminated(137, reason="OOMKilled", finished_ago=5, label="w"),
                restarts=2,
            ),
        ],
        restart_policy="Always",
    )
    found = run(doc)
    assert rules(found) == ["crashloop", "oom-killed", "not-ready"]
    assert [f.severity for f in found] == ["error", "error", "warning"]


def test_finding_to_dict() -> None:
    f = one(run(myapp()), "init-waiting")
    d = f.to_dict()
    assert d["rule"] == "init-waiting"
    assert d["since"] == "2025-03-04T11:55:00Z"
    evidence = d["evidence"]
    assert isinstance(evidence, list)
    assert evidence[0] == {"kind": "api", "label": "pod status", "value": "Init:0/2"}
    assert isinstance(d["next_steps"], list)


def test_offline_inputs_leave_out_the_agents_urls() -> None:
    f = one(run(myapp(), agent_urls=False), "init-waiting")
    assert not any(step.startswith("/v1/") for step in f.next_steps)


# --------------------------------------------------------------------------
# Reading what a command waits for
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "what", "loops"),
    [
        (NSLOOKUP, ["name myservice"], True),
        (["nslookup", "myservice"], ["name myservice"], False),
        (
            [
                "sh",
                "-c",
                "until nslookup myservice."
                "$(cat /var/run/secrets/kubernetes.io/serviceaccount/namespace)"
                ".svc.cluster.local; do echo waiting; sleep 2; done",
            ],
            ["name myservice.shop.svc.cluster.local"],
            True,
        ),
        (
            ["sh", "-c", "until getent hosts mydb > /dev/null 2>&1; do sleep 1; done"],
            ["name mydb"],
            True,
        ),
        (["sh", "-c", "while ! nc -z -w 2 db 5432; do sleep 1; done"], ["TCP db:5432"], True),
        (
            ["sh", "-c", "until curl -fsS --max-time 2 http://api:8080/healthz; do sleep 1; done"],
            ["URL http://api:8080/healthz"],
            True,
        ),
        (
            ["/bin/sh", "-ec", "until wget -q -O /dev/null api:9000\ndo sleep 1\ndone"],
            ["URL api:9000"],
            True,
        ),
        (["sh", "-c", "until [ -f /work/ready ]; do sleep 1; done"], ["file /work/ready"], True),
        (["sh", "-c", "echo hello && sleep 3600"], [], False),
    ],
)
def test_wait_plans(argv: list[str], what: list[str], loops: bool) -> None:
    plan = wait_plan(tuple(argv), (), namespace="shop")
    assert [t.what for t in plan.targets] == what
    assert plan.loops is loops


def test_wait_plan_reads_the_namespace_from_a_downward_api_variable() -> None:
    plan = wait_plan(
        ("sh", "-c", "until nslookup db.${MY_NS}.svc; do sleep 1; done"),
        (),
        namespace="shop",
        namespace_vars=("MY_NS",),
    )
    assert [t.host for t in plan.targets] == ["db.shop.svc"]


@pytest.mark.parametrize(
    ("host", "service"),
    [
        ("myservice", ("myservice", "shop")),
        ("myservice.shop", ("myservice", "shop")),
        ("myservice.shop.svc", ("myservice", "shop")),
        ("myservice.shop.svc.cluster.local", ("myservice", "shop")),
        ("myservice.shop.svc.cluster.local.", ("myservice", "shop")),
        ("web-0.web.shop.svc.cluster.local", ("web", "shop")),
        ("db.other.svc.cluster.local", ("db", "other")),
        ("example.com", None),
        ("10.96.0.1", None),
        ("db.$CMD.svc", None),
    ],
)
def test_service_for(host: str, service: tuple[str, str] | None) -> None:
    assert service_for(host, "shop") == service


# --------------------------------------------------------------------------
# Host facts the caller feeds the rules
# --------------------------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[tuple[int, int]]:
    """A child process listening on 127.0.0.1:<ephemeral>; yields (pid, port)."""
    code = (
        "import socket, sys, time\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
        "print(s.getsockname()[1], flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield proc.pid, port
    finally:
        proc.kill()
        proc.wait()


def test_a_real_listening_socket_shows_up(listener: tuple[int, int]) -> None:
    pid, port = listener
    assert port in listening_tcp_ports(pid)


def test_a_connected_but_not_listening_socket_does_not(listener: tuple[int, int]) -> None:
    pid, port = listener
    with socket.create_connection(("127.0.0.1", port)) as client:
        local_port = client.getsockname()[1]
        ports = listening_tcp_ports(pid)
    assert port in ports
    assert local_port not in ports


def test_listening_ports_of_a_missing_process() -> None:
    with pytest.raises(ProcessGone):
        listening_tcp_ports(2**22 + 12345)


TCP_HEADER = (
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
    "timeout inode\n"
)


def test_listening_ports_from_crafted_tables(tmp_path: Path) -> None:
    net = tmp_path / "4242" / "net"
    net.mkdir(parents=True)
    (net / "tcp").write_text(
        TCP_HEADER
        + "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  0 0 1 1\n"
        + "   1: 0A00000B:0050 0A00000C:D431 01 00000000:00000000 00:00000000 00000000  0 0 2 1\n"
    )
    (net / "tcp6").write_text(
        TCP_HEADER
        + "   0: 00000000000000000000000000000000:2382 00000000000000000000000000000000:0000 0A "
        "00000000:00000000 00:00000000 00000000 0 0 3 1\n"
    )
    assert listening_tcp_ports(4242, tmp_path) == {8080, 9090}


def test_a_missing_tcp6_table_is_skipped(tmp_path: Path) -> None:
    net = tmp_path / "7" / "net"
    net.mkdir(parents=True)
    (net / "tcp").write_text(
        TCP_HEADER
        + "   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 0 0 0 1 1\n"
    )
    assert listening_tcp_ports(7, tmp_path) == {22}


def crafted_cgroup(tmp_path: Path, pid: int, cgroup_lines: str) -> tuple[Path, Path]:
    proc = tmp_path / "proc"
    (proc / str(pid)).mkdir(parents=True)
    (proc / str(pid) / "cgroup").write_text(cgroup_lines)
    return proc, tmp_path / "cgroup"


def test_oom_kill_count_cgroup_v2(tmp_path: Path) -> None:
    scope = "kubepods.slice/kubepods-pod9f1c.slice/cri-containerd-" + rid("web") + ".scope"
    proc, root = crafted_cgroup(tmp_path, 31, f"0::/{scope}\n")
    (root / scope).mkdir(parents=True)
    (root / scope / "memory.events").write_text(
        "low 0\nhigh 0\nmax 12\noom 3\noom_kill 3\noom_group_kill 0\n"
    )
    assert oom_kill_count(31, proc, root) == 3


def test_oom_kill_count_cgroup_v1_on_a_hybrid_host(tmp_path: Path) -> None:
    path = "kubepods/burstable/pod9f1c3c7e-2b7a-4d64-8f0e-1a2b3c4d5e6f/" + rid("web")
    proc, root = crafted_cgroup(tmp_path, 32, f"12:pids:/{path}\n5:memory:/{path}\n0::/{path}\n")
    (root / "memory" / path).mkdir(parents=True)
    (root / "memory" / path / "memory.oom_control").write_text(
        "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n"
    )
    assert oom_kill_count(32, proc, root) == 1


@pytest.mark.parametrize(
    "lines",
    [
        "0::/../../kubepods.slice/x.scope\n",  # relative to a foreign cgroup namespace
        "0::/no/such/cgroup\n",  # no memory.events there
        "",  # unreadable
    ],
)
def test_oom_kill_count_unknown(tmp_path: Path, lines: str) -> None:
    proc, root = crafted_cgroup(tmp_path, 33, lines)
    assert oom_kill_count(33, proc, root) is None


def test_oom_kill_count_of_a_missing_process_is_unknown(tmp_path: Path) -> None:
    assert oom_kill_count(2**22 + 12345) is None


def test_oom_kill_count_of_this_process_matches_its_cgroup() -> None:
    count = oom_kill_count(os.getpid())
    lines = Path("/proc/self/cgroup").read_text().splitlines()
    memory = [ln.split(":", 2)[2] for ln in lines if "memory" in ln.split(":")[1].split(",")]
    unified = [ln.split(":", 2)[2] for ln in lines if ln.startswith("0::")]
    expected: int | None = None
    for base, path, name in (
        *((Path("/sys/fs/cgroup/memory"), p, "memory.oom_control") for p in memory),
        *((Path("/sys/fs/cgroup"), p, "memory.events") for p in unified),
    ):
        f = base / path.lstrip("/") / name
        if ".." not in path and f.exists():
            for line in f.read_text().splitlines():
                if line.startswith("oom_kill "):
                    expected = int(line.split()[1])
            break
    assert count == expected
