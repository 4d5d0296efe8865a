"""STATUS / READY / RESTARTS as kubectl prints them, one case per printPod branch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agent.domain.podstatus import (
    PodStatusStrings,
    human_duration,
    kubectl_age,
    kubectl_ready,
    kubectl_restarts,
    kubectl_status,
    status_strings,
    time_since,
)
from agent.kube.convert import pod_from_dict

NOW = datetime(2025, 3, 4, 12, 0, 0, tzinfo=UTC)
Doc = dict[str, Any]


def ago(**kwargs: float) -> str:
    return (NOW - timedelta(**kwargs)).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------
# Builders for documents shaped like `kubectl get pod -o json`
# --------------------------------------------------------------------------


def container(name: str, *, sidecar: bool = False) -> Doc:
    c: Doc = {
        "name": name,
        "image": f"registry.example.com/team/{name}:1.0",
        "imagePullPolicy": "IfNotPresent",
        "resources": {},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }
    if sidecar:
        c["restartPolicy"] = "Always"
    return c


def cond(type_: str, status: str = "True", reason: str | None = None) -> Doc:
    c: Doc = {
        "type": type_,
        "status": status,
        "lastProbeTime": None,
        "lastTransitionTime": ago(hours=1),
    }
    if reason:
        c["reason"] = reason
    return c


def conditions(
    *, initialized: bool = True, ready: bool = True, scheduled: bool = True
) -> list[Doc]:
    def s(flag: bool) -> str:
        return "True" if flag else "False"

    return [
        cond("PodReadyToStartContainers", s(scheduled)),
        cond("Initialized", s(initialized), None if initialized else "ContainersNotInitialized"),
        cond("Ready", s(ready), None if ready else "ContainersNotReady"),
        cond("ContainersReady", s(ready), None if ready else "ContainersNotReady"),
        cond("PodScheduled", s(scheduled)),
    ]


def last_exit(minutes_ago: float, *, reason: str = "Error", exit_code: int = 1) -> Doc:
    return {
        "terminated": {
            "containerID": "containerd://0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "exitCode": exit_code,
            "reason": reason,
            "startedAt": ago(minutes=minutes_ago + 1),
            "finishedAt": ago(minutes=minutes_ago),
        }
    }


def _status(
    name: str,
    state: Doc,
    *,
    ready: bool,
    started: bool | None,
    restarts: int,
    last: Doc | None,
) -> Doc:
    s: Doc = {
        "name": name,
        "image": f"registry.example.com/team/{name}:1.0",
        "imageID": f"registry.example.com/team/{name}@sha256:{'ab' * 32}",
        "ready": ready,
        "restartCount": restarts,
        "state": state,
        "lastState": last or {},
    }
    if "waiting" not in state:
        s["containerID"] = f"containerd://{name.encode().hex():0<64}"
    if started is not None:
        s["started"] = started
    return s


def running(
    name: str,
    *,
    ready: bool = True,
    started: bool | None = True,
    restarts: int = 0,
    last: Doc | None = None,
) -> Doc:
    state = {"running": {"startedAt": ago(minutes=30)}}
    return _status(name, state, ready=ready, started=started, restarts=restarts, last=last)


def waiting(
    name: str,
    reason: str | None,
    *,
    restarts: int = 0,
    last: Doc | None = None,
    message: str | None = None,
) -> Doc:
    w: Doc = {}
    if reason:
        w["reason"] = reason
    if message:
        w["message"] = message
    return _status(name, {"waiting": w}, ready=False, started=False, restarts=restarts, last=last)


def terminated(
    name: str,
    exit_code: int,
    reason: str | None = None,
    *,
    signal: int | None = None,
    restarts: int = 0,
    last: Doc | None = None,
) -> Doc:
    t: Doc = {
        "containerID": f"containerd://{name.encode().hex():0<64}",
        "exitCode": exit_code,
        "startedAt": ago(minutes=20),
        "finishedAt": ago(minutes=10),
    }
    if reason:
        t["reason"] = reason
    if signal is not None:
        t["signal"] = signal
    return _status(
        name, {"terminated": t}, ready=False, started=False, restarts=restarts, last=last
    )


def pod(
    *,
    containers: list[Doc],
    init: list[Doc] | None = None,
    phase: str | None = "Running",
    reason: str | None = None,
    conds: list[Doc] | None = None,
    statuses: list[Doc] | None = None,
    init_statuses: list[Doc] | None = None,
    deleted: bool = False,
    restart_policy: str = "Always",
    node: str | None = "worker-1",
) -> Doc:
    spec: Doc = {
        "containers": containers,
        "restartPolicy": restart_policy,
        "schedulerName": "default-scheduler",
        "terminationGracePeriodSeconds": 30,
    }
    if init:
        spec["initContainers"] = init
    if node:
        spec["nodeName"] = node
    metadata: Doc = {
        "name": "app-5d8f7b9c6d-q4w2e",
        "namespace": "default",
        "uid": "6a1f0c2e-3b4d-4e5f-8a9b-0c1d2e3f4a5b",
        "resourceVersion": "424242",
        "creationTimestamp": ago(hours=3, minutes=5),
        "labels": {"app": "app"},
    }
    if deleted:
        metadata["deletionTimestamp"] = ago(seconds=20)
        metadata["deletionGracePeriodSeconds"] = 30
    status: Doc = {"qosClass": "BestEffort"}
    if phase is not None:
        status["phase"] = phase
    if reason:
        status["reason"] = reason
        status["message"] = f"{reason} happened"
    if conds is not None:
        status["conditions"] = conds
    if statuses is not None:
        status["containerStatuses"] = statuses
    if init_statuses is not None:
        status["initContainerStatuses"] = init_statuses
    if node and phase in ("Running", "Succeeded", "Failed"):
        status["hostIP"] = "10.0.0.11"
        status["podIP"] = "10.244.1.23"
        status["startTime"] = ago(hours=3)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec, "status": status}


def without_status(doc: Doc) -> Doc:
    del doc["status"]
    return doc


APP = [container("app")]
APP2 = [container("app"), container("helper")]

# (id, document, STATUS, READY, RESTARTS)
CASES: list[tuple[str, Doc, str, str, str]] = [
    # ---- phase and status.reason -------------------------------------------
    (
        "running",
        pod(containers=APP, conds=conditions(), statuses=[running("app")]),
        "Running",
        "1/1",
        "0",
    ),
    (
        "running-one-of-two-ready",
        pod(
            containers=APP2,
            conds=conditions(ready=False),
            statuses=[running("app"), running("helper", ready=False)],
        ),
        "Running",
        "1/2",
        "0",
    ),
    (
        "running-waiting-without-reason-is-not-ready",
        pod(containers=APP, conds=conditions(ready=False), statuses=[waiting("app", None)]),
        "Running",
        "0/1",
        "0",
    ),
    (
        "just-created-no-status-at-all",
        without_status(pod(containers=APP, phase=None, node=None)),
        "",
        "0/1",
        "0",
    ),
    (
        "just-scheduled-no-container-statuses",
        pod(containers=APP, phase="Pending", conds=[cond("PodScheduled")]),
        "Pending",
        "0/1",
        "0",
    ),
    (
        "unschedulable",
        pod(
            containers=APP,
            phase="Pending",
            node=None,
            conds=[cond("PodScheduled", "False", "Unschedulable")],
        ),
        "Pending",
        "0/1",
        "0",
    ),
    (
        "scheduling-gated",
        pod(
            containers=APP,
            phase="Pending",
            node=None,
            conds=[cond("PodScheduled", "False", "SchedulingGated")],
        ),
        "SchedulingGated",
        "0/1",
        "0",
    ),
    (
        "evicted-before-containers-reported",
        pod(containers=APP, phase="Failed", reason="Evicted", conds=conditions(ready=False)),
        "Evicted",
        "0/1",
        "0",
    ),
    (
        # Current kubelets leave a terminated state behind, and the container
        # walk runs after status.reason: kubectl shows the container's reason.
        "evicted-with-container-status-unknown",
        pod(
            containers=APP,
            phase="Failed",
            reason="Evicted",
            conds=conditions(ready=False),
            statuses=[terminated("app", 137, "ContainerStatusUnknown", restarts=1)],
        ),
        "ContainerStatusUnknown",
        "0/1",
        "1",
    ),
    (
        "node-lost-without-deletion-keeps-reason",
        pod(containers=APP, reason="NodeLost", conds=conditions(), statuses=[running("app")]),
        "NodeLost",
        "1/1",
        "0",
    ),
    # ---- app containers ------------------------------------------------------
    (
        "container-creating",
        pod(
            containers=APP,
            phase="Pending",
            conds=conditions(ready=False),
            statuses=[waiting("app", "ContainerCreating")],
        ),
        "ContainerCreating",
        "0/1",
        "0",
    ),
    (
        "pod-initializing-on-app-container",
        pod(
            containers=APP,
            init=[container("setup")],
            phase="Pending",
            conds=conditions(ready=False),
            init_statuses=[terminated("setup", 0, "Completed")],
            statuses=[waiting("app", "PodInitializing")],
        ),
        "PodInitializing",
        "0/1",
        "0",
    ),
    (
        "image-pull-backoff",
        pod(
            containers=APP,
            phase="Pending",
            conds=conditions(ready=False),
            statuses=[
                waiting(
                    "app",
                    "ImagePullBackOff",
                    message='Back-off pulling image "registry.example.com/team/app:1.0"',
                )
            ],
        ),
        "ImagePullBackOff",
        "0/1",
        "0",
    ),
    (
        "err-image-pull",
        pod(
            containers=APP,
            phase="Pending",
            conds=conditions(ready=False),
            statuses=[waiting("app", "ErrImagePull")],
        ),
        "ErrImagePull",
        "0/1",
        "0",
    ),
    (
        "create-container-config-error",
        pod(
            containers=APP,
            phase="Pending",
            conds=conditions(ready=False),
            statuses=[waiting("app", "CreateContainerConfigError")],
        ),
        "CreateContainerConfigError",
        "0/1",
        "0",
    ),
    (
        "crash-loop-back-off",
        pod(
            containers=APP,
            conds=conditions(ready=False),
            statuses=[
                waiting("app", "CrashLoopBackOff", restarts=5, last=last_exit(2.5, exit_code=2))
            ],
        ),
        "CrashLoopBackOff",
        "0/1",
        "5 (2m30s ago)",
    ),
    (
        "oom-killed",
        pod(
            containers=APP,
            conds=conditions(ready=False),
            statuses=[
                terminated(
                    "app",
                    137,
                    "OOMKilled",
                    restarts=2,
                    last=last_exit(7, reason="OOMKilled", exit_code=137),
                )
            ],
        ),
        "OOMKilled",
        "0/1",
        "2 (7m ago)",
    ),
    (
        "completed",
        pod(
            containers=APP,
            phase="Succeeded",
            restart_policy="Never",
            conds=conditions(ready=False),
            statuses=[terminated("app", 0, "Completed")],
        ),
        "Completed",
        "0/1",
        "0",
    ),
    (
        "error",
        pod(
            containers=APP,
            phase="Failed",
            restart_policy="Never",
            conds=conditions(ready=False),
            statuses=[terminated("app", 1, "Error")],
        ),
        "Error",
        "0/1",
        "0",
    ),
    (
        "exit-code-without-reason",
        pod(
            containers=APP,
            phase="Failed",
            restart_policy="Never",
            conds=conditions(ready=False),
            statuses=[terminated("app", 3)],
        ),
        "ExitCode:3",
        "0/1",
        "0",
    ),
    (
        "signal-without-reason",
        pod(
            containers=APP,
            phase="Failed",
            restart_policy="Never",
            conds=conditions(ready=False),
            statuses=[terminated("app", 137, signal=9)],
        ),
        "Signal:9",
        "0/1",
        "0",
    ),
    (
        "first-container-in-spec-order-names-the-pod",
        pod(
            containers=APP2,
            phase="Pending",
            conds=conditions(ready=False),
            statuses=[
                waiting("app", "CrashLoopBackOff", restarts=1, last=last_exit(1)),
                waiting("helper", "ImagePullBackOff"),
            ],
        ),
        "CrashLoopBackOff",
        "0/2",
        "1 (60s ago)",
    ),
    (
        "completed-next-to-ready-running-and-pod-ready",
        pod(
            containers=APP2,
            restart_policy="OnFailure",
            conds=conditions(ready=True),
            statuses=[running("app"), terminated("helper", 0, "Completed")],
        ),
        "Running",
        "1/2",
        "0",
    ),
    (
        "completed-next-to-ready-running-pod-not-ready",
        pod(
            containers=APP2,
            restart_policy="OnFailure",
            conds=conditions(ready=False),
            statuses=[running("app"), terminated("helper", 0, "Completed")],
        ),
        "NotReady",
        "1/2",
        "0",
    ),
    (
        "completed-next-to-running-but-unready-stays-completed",
        pod(
            containers=APP2,
            restart_policy="OnFailure",
            conds=conditions(ready=False),
            statuses=[running("app", ready=False), terminated("helper", 0, "Completed")],
        ),
        "Completed",
        "0/2",
        "0",
    ),
    (
        "restarts-summed-newest-exit-wins",
        pod(
            containers=APP2,
            conds=conditions(),
            statuses=[
                running("app", restarts=2, last=last_exit(60)),
                running("helper", restarts=1, last=last_exit(3)),
            ],
        ),
        "Running",
        "2/2",
        "3 (3m ago)",
    ),
    (
        "restarts-without-finish-time-have-no-ago",
        pod(
            containers=APP,
            conds=conditions(),
            statuses=[running("app", restarts=3)],
        ),
        "Running",
        "1/1",
        "3",
    ),
    (
        "restarts-days-ago",
        pod(
            containers=APP,
            conds=conditions(),
            statuses=[running("app", restarts=12, last=last_exit(60 * 51))],
        ),
        "Running",
        "1/1",
        "12 (2d3h ago)",
    ),
    # ---- init containers -----------------------------------------------------
    (
        "just-scheduled-with-init-containers-no-statuses",
        pod(
            containers=APP,
            init=[container("setup"), container("proxy", sidecar=True)],
            phase="Pending",
            conds=[cond("PodScheduled")],
        ),
        "Pending",
        "0/2",
        "0",
    ),
    (
        "init-0-of-2",
        pod(
            containers=APP,
            init=[container("fetch"), container("migrate")],
            phase="Pending",
            conds=conditions(initialized=False, ready=False),
            init_statuses=[
                running("fetch", ready=False, started=True),
                waiting("migrate", "PodInitializing"),
            ],
            statuses=[waiting("app", "PodInitializing")],
        ),
        "Init:0/2",
        "0/1",
        "0",
    ),
    (
        "init-pod-initializing-is-a-count",
        pod(
            containers=APP,
            init=[container("fetch"), container("migrate")],
            phase="Pending",
            conds=conditions(initialized=False, ready=False),
            init_statuses=[
                waiting("fetch", "PodInitializing"),
                waiting("migrate", "PodInitializing"),
            ],
            statuses=[waiting("app", "PodInitializing")],
        ),
        "Init:0/2",
        "0/1",
        "0",
    ),
    (
        "init-1-of-2",
        pod(
            containers=APP,
            init=[container("fetch"), container("migrate")],
            phase="Pending",
            conds=conditions(initialized=False, ready=False),
            init_statuses=[
                terminated("fetch", 0, "Completed"),
                running("migrate", ready=False, started=True),
            ],
            statuses=[waiting("app", "PodInitializing")],
        ),
        "Init:1/2",
        "0/1",
        "0",
    ),
    (
        # Restarts of every init container visited count, including the one
        # that already completed; app containers do not.
        "init-crash-loop-back-off",
        pod(
            containers=APP,
            init=[container("fetch"), container("migrate")],
            phase="Pending",
            conds=conditions(initialized=False, ready=False),
            init_statuses=[
                terminated("fetch", 0, "Completed", restarts=1, last=last_exit(10)),
                waiting("migrate", "CrashLoopBackOff", restarts=4, last=last_exit(0.75)),
            ],
            statuses=[waiting("app", "PodInitializing", restarts=9, last=last_exit(0.1))],
        ),
        "Init:CrashLoopBackOff",
        "0/1",
        "5 (45s ago)",
    ),
    (
        "init-error",
        pod(
            containers=APP,
            init=[container("migrate")],
            phase="Failed",
            restart_policy="Never",
            conds=conditions(initialized=False, ready=False),
            init_statuses=[terminated("migrate", 1, "Error")],
            statuses=[waiting("app", "PodInitializing")],
        ),
        "Init:Error",
        "0/1",
        "0",
    ),
    (
        "init-exit-code",
        pod(
            containers=APP,
            init=[container("migrate")],
            phase="Pending",
            conds=conditions(initialized=False, ready=False),
            init_statuses=[terminated("migrate", 2)],
            statuses=[waiting("app", "PodInitializing")],
        ),
        "Init:ExitCode:2",
        "0/1",
        "0",
    ),
    (
        "init-signal",
        pod(
            containers=APP,
            init=[container("migrate")],
            phase="Pending",
            conds=conditions(initialized=False, ready=False),
            init_statuses=[terminated("migrate", 143, signal=15)],
            statuses=[waiting("app", "PodInitializing")],
        ),
        "Init:Signal:15",
        "0/1",
        "0",
    ),
    (
        "init-oom-killed",
        pod(
            containers=APP,
            init=[container("setup"), container("migrate")],
            phase="Pending",
            conds=conditions(initialized=False, ready=False),
            init_statuses=[
                terminated("setup", 0, "Completed"),
                terminated("migrate", 137, "OOMKilled", restarts=1, last=last_exit(4)),
            ],
            statuses=[waiting("app", "PodInitializing")],
        ),
        "Init:OOMKilled",
        "0/1",
        "1 (4m ago)",
    ),
    (
        "init-image-pull-back-off",
        pod(
            containers=APP,
            init=[container("fetch")],
            phase="Pending",
            conds=conditions(initialized=False, ready=False),
            init_statuses=[waiting("fetch", "ImagePullBackOff")],
            statuses=[waiting("app", "PodInitializing")],
        ),
        "Init:ImagePullBackOff",
        "0/1",
        "0",
    ),
    (
        # Plain init containers' restarts drop out once the pod is initialized.
        "initialized-pod-ignores-init-restarts",
        pod(
            containers=APP,
            init=[container("setup")],
            conds=conditions(),
            init_statuses=[terminated("setup", 0, "Completed", restarts=3, last=last_exit(50))],
            statuses=[running("app")],
        ),
        "Running",
        "1/1",
        "0",
    ),
    (
        # Initialized=True wins over a blocking-looking init status: the app
        # walk runs and names the pod.
        "initialized-condition-overrides-init-view",
        pod(
            containers=APP,
            init=[container("setup")],
            conds=conditions(ready=False),
            init_statuses=[waiting("setup", "CrashLoopBackOff", restarts=2, last=last_exit(9))],
            statuses=[waiting("app", "CrashLoopBackOff", restarts=4, last=last_exit(1.5))],
        ),
        "CrashLoopBackOff",
        "0/1",
        "4 (90s ago)",
    ),
    # ---- native sidecars -----------------------------------------------------
    (
        "sidecar-and-app-running",
        pod(
            containers=APP,
            init=[container("proxy", sidecar=True)],
            conds=conditions(),
            init_statuses=[running("proxy")],
            statuses=[running("app")],
        ),
        "Running",
        "2/2",
        "0",
    ),
    (
        "sidecar-started-not-ready",
        pod(
            containers=APP,
            init=[container("proxy", sidecar=True)],
            conds=conditions(ready=False),
            init_statuses=[running("proxy", ready=False)],
            statuses=[running("app")],
        ),
        "Running",
        "1/2",
        "0",
    ),
    (
        "sidecar-not-started-yet",
        pod(
            containers=APP,
            init=[container("proxy", sidecar=True)],
            phase="Pending",
            conds=conditions(initialized=False, ready=False),
            init_statuses=[running("proxy", ready=False, started=False)],
            statuses=[waiting("app", "PodInitializing")],
        ),
        "Init:0/1",
        "0/2",
        "0",
    ),
    (
        "sidecar-ready-while-next-init-runs",
        pod(
            containers=APP,
            init=[container("proxy", sidecar=True), container("migrate")],
            phase="Pending",
            conds=conditions(initialized=False, ready=False),
            init_statuses=[running("proxy"), running("migrate", ready=False)],
            statuses=[waiting("app", "PodInitializing")],
        ),
        "Init:1/2",
        "1/2",
        "0",
    ),
    (
        # Sidecar and app restarts count; the completed plain init container's don't.
        "sidecar-restarts-count-after-init",
        pod(
            containers=APP,
            init=[container("setup"), container("proxy", sidecar=True)],
            conds=conditions(),
            init_statuses=[
                terminated("setup", 0, "Completed", restarts=3, last=last_exit(1)),
                running("proxy", restarts=2, last=last_exit(20)),
            ],
            statuses=[running("app", restarts=1, last=last_exit(5))],
        ),
        "Running",
        "2/2",
        "3 (5m ago)",
    ),
    (
        # A crashing sidecar of an initialized pod: the init walk names it and
        # the app walk, which runs because Initialized is True, has nothing to
        # add; READY still counts the serving app container.
        "sidecar-crash-loop-in-initialized-pod",
        pod(
            containers=APP,
            init=[container("proxy", sidecar=True)],
            conds=conditions(ready=False),
            init_statuses=[
                waiting("proxy", "CrashLoopBackOff", restarts=6, last=last_exit(0.5, exit_code=1))
            ],
            statuses=[running("app")],
        ),
        "Init:CrashLoopBackOff",
        "1/2",
        "6 (30s ago)",
    ),
    (
        "job-with-sidecar-completed",
        pod(
            containers=APP,
            init=[container("proxy", sidecar=True)],
            phase="Succeeded",
            restart_policy="Never",
            conds=conditions(ready=False),
            init_statuses=[terminated("proxy", 0, "Completed")],
            statuses=[terminated("app", 0, "Completed")],
        ),
        "Completed",
        "0/2",
        "0",
    ),
    # ---- deletion ------------------------------------------------------------
    (
        "terminating",
        pod(containers=APP, deleted=True, conds=conditions(), statuses=[running("app")]),
        "Terminating",
        "1/1",
        "0",
    ),
    (
        "terminating-overrides-crash-loop",
        pod(
            containers=APP,
            deleted=True,
            conds=conditions(ready=False),
            statuses=[waiting("app", "CrashLoopBackOff", restarts=3, last=last_exit(2))],
        ),
        "Terminating",
        "0/1",
        "3 (2m ago)",
    ),
    (
        "deleted-succeeded-pod-is-not-terminating",
        pod(
            containers=APP,
            deleted=True,
            phase="Succeeded",
            restart_policy="Never",
            conds=conditions(ready=False),
            statuses=[terminated("app", 0, "Completed")],
        ),
        "Completed",
        "0/1",
        "0",
    ),
    (
        "deleted-failed-pod-is-not-terminating",
        pod(
            containers=APP,
            deleted=True,
            phase="Failed",
            restart_policy="Never",
            conds=conditions(ready=False),
            statuses=[terminated("app", 1, "Error")],
        ),
        "Error",
        "0/1",
        "0",
    ),
    (
        "node-lost-and-deleted-is-unknown",
        pod(
            containers=APP,
            deleted=True,
            reason="NodeLost",
            conds=conditions(ready=False),
            statuses=[running("app")],
        ),
        "Unknown",
        "1/1",
        "0",
    ),
    (
        "node-lost-beats-terminal-phase",
        pod(containers=APP, deleted=True, phase="Failed", reason="NodeLost"),
        "Unknown",
        "0/1",
        "0",
    ),
]


@pytest.mark.parametrize(
    ("doc", "status", "ready", "restarts"),
    [pytest.param(d, s, r, n, id=i) for i, d, s, r, n in CASES],
)
def test_kubectl_columns(doc: Doc, status: str, ready: str, restarts: str) -> None:
    p = pod_from_dict(doc)
    assert kubectl_status(p) == status
    assert kubectl_ready(p) == ready
    assert kubectl_restarts(p, NOW) == restarts


def test_case_ids_are_unique() -> None:
    ids = [case[0] for case in CASES]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 30


def test_status_strings_bundle() -> None:
    doc = pod(
        containers=APP,
        init=[container("proxy", sidecar=True)],
        conds=conditions(ready=False),
        init_statuses=[running("proxy", restarts=1, last=last_exit(30))],
        statuses=[waiting("app", "CrashLoopBackOff", restarts=4, last=last_exit(2.5))],
    )
    result = status_strings(pod_from_dict(doc), NOW)
    assert result == PodStatusStrings(
        status="CrashLoopBackOff",
        ready="1/2",
        restarts="5 (2m30s ago)",
        age="3h5m",
        ready_count=1,
        total_count=2,
        restart_count=5,
        last_restart_at=NOW - timedelta(minutes=2.5),
    )


def test_age() -> None:
    doc = pod(containers=APP)
    assert kubectl_age(pod_from_dict(doc), NOW) == "3h5m"
    del doc["metadata"]["creationTimestamp"]
    assert kubectl_age(pod_from_dict(doc), NOW) == "<unknown>"


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(seconds=-5), "<invalid>"),
        (timedelta(seconds=-2), "<invalid>"),
        (timedelta(seconds=-1.5), "0s"),
        (timedelta(seconds=-1), "0s"),
        (timedelta(milliseconds=-300), "0s"),
        (timedelta(0), "0s"),
        (timedelta(milliseconds=999), "0s"),
        (timedelta(seconds=1), "1s"),
        (timedelta(seconds=59), "59s"),
        (timedelta(seconds=90), "90s"),
        (timedelta(seconds=119, milliseconds=999), "119s"),
        (timedelta(minutes=2), "2m"),
        (timedelta(minutes=2, seconds=30), "2m30s"),
        (timedelta(minutes=9, seconds=59), "9m59s"),
        (timedelta(minutes=10), "10m"),
        (timedelta(minutes=10, seconds=59), "10m"),
        (timedelta(minutes=179, seconds=59), "179m"),
        (timedelta(hours=3), "3h"),
        (timedelta(hours=3, minutes=5), "3h5m"),
        (timedelta(hours=7, minutes=59, seconds=59), "7h59m"),
        (timedelta(hours=8), "8h"),
        (timedelta(hours=8, minutes=30), "8h"),
        (timedelta(hours=47, minutes=59), "47h"),
        (timedelta(hours=48), "2d"),
        (timedelta(hours=51), "2d3h"),
        (timedelta(days=7, hours=23, minutes=59), "7d23h"),
        (timedelta(days=8), "8d"),
        (timedelta(days=8, hours=5), "8d"),
        (timedelta(days=729, hours=23), "729d"),
        (timedelta(days=730), "2y"),
        (timedelta(days=731), "2y1d"),
        (timedelta(days=8 * 365 - 1), "7y364d"),
        (timedelta(days=8 * 365), "8y"),
        (timedelta(days=10 * 365 + 200), "10y"),
    ],
)
def test_human_duration(delta: timedelta, text: str) -> None:
    assert human_duration(delta) == text


def test_time_since() -> None:
    assert time_since(None, NOW) == "<unknown>"
    assert time_since(NOW - timedelta(seconds=42), NOW) == "42s"
    # Naive datetimes are read as UTC rather than failing the subtraction.
    assert time_since(datetime(2025, 3, 4, 11, 55), NOW) == "5m"
    assert time_since(NOW - timedelta(minutes=5), datetime(2025, 3, 4, 12, 0)) == "5m"
