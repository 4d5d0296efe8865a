"""Joining the API server's pods with the runtime's sandboxes and containers."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from agent.domain.kubemodel import ApiPod, ContainerRole
from agent.domain.model import Container, ContainerState, Mount, PodRef, Sandbox, SandboxState
from agent.domain.podview import (
    ContainerView,
    Mismatch,
    PodView,
    VolumeUser,
    build_pod_view,
    build_pod_views,
)
from agent.kube.convert import pod_from_dict

NOW = datetime(2025, 3, 4, 12, 0, 0, tzinfo=UTC)
NODE = "node-a"
Doc = dict[str, Any]
_T = TypeVar("_T", Sandbox, Container)

UID = "6f1c2a3b-4d5e-4f60-8a1b-2c3d4e5f6a7b"
OTHER_UID = "0a9b8c7d-6e5f-4a3b-9c2d-1e0f9a8b7c6d"


def rid(label: str) -> str:
    """A 64-hex runtime ID, stable per label."""
    return hashlib.sha256(label.encode()).hexdigest()


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def stamp(seconds: float) -> str:
    return ago(seconds).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------
# API documents, shaped like `kubectl get pod -o json`
# --------------------------------------------------------------------------


def cspec(name: str, *, sidecar: bool = False, mounts: list[Doc] | None = None) -> Doc:
    c: Doc = {
        "name": name,
        "image": f"registry.example.com/shop/{name}:1.4",
        "imagePullPolicy": "IfNotPresent",
        "resources": {},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "volumeMounts": [
            {
                "name": "kube-api-access-x7k2p",
                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                "readOnly": True,
            },
            *(mounts or []),
        ],
    }
    if sidecar:
        c["restartPolicy"] = "Always"
    return c


def running(*, started: float = 600) -> Doc:
    return {"running": {"startedAt": stamp(started)}}


def cstatus(
    name: str,
    container_id: str | None,
    *,
    state: Doc,
    last_state: Doc | None = None,
    ready: bool = True,
    restarts: int = 0,
) -> Doc:
    s: Doc = {
        "name": name,
        "image": f"registry.example.com/shop/{name}:1.4",
        "imageID": f"registry.example.com/shop/{name}@sha256:{rid(name)}",
        "ready": ready,
        "started": ready,
        "restartCount": restarts,
        "state": state,
        "lastState": last_state or {},
    }
    if container_id is not None:
        s["containerID"] = f"containerd://{container_id}"
    return s


def terminated(
    container_id: str, *, finished: float, reason: str = "Error", exit_code: int = 1
) -> Doc:
    return {
        "terminated": {
            "exitCode": exit_code,
            "reason": reason,
            "startedAt": stamp(finished + 5),
            "finishedAt": stamp(finished),
            "containerID": f"containerd://{container_id}",
        }
    }


def pod_doc(
    name: str,
    uid: str = UID,
    *,
    namespace: str = "shop",
    node: str | None = NODE,
    init: list[Doc] | None = None,
    containers: list[Doc] | None = None,
    ephemeral: list[Doc] | None = None,
    volumes: list[Doc] | None = None,
    phase: str = "Running",
    created: float = 3600,
    scheduled: float | None = None,
    init_statuses: list[Doc] | None = None,
    statuses: list[Doc] | None = None,
    annotations: dict[str, str] | None = None,
    deleting: bool = False,
) -> Doc:
    spec: Doc = {
        "containers": containers if containers is not None else [cspec("web")],
        "restartPolicy": "Always",
        "serviceAccountName": "default",
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
    }
    if node is not None:
        spec["nodeName"] = node
    if init:
        spec["initContainers"] = init
    if ephemeral:
        spec["ephemeralContainers"] = ephemeral
    status: Doc = {
        "phase": phase,
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": stamp(created if scheduled is None else scheduled),
            }
        ],
        "qosClass": "BestEffort",
    }
    if statuses is not None:
        status["containerStatuses"] = statuses
        status["startTime"] = stamp(created - 1)
    if init_statuses is not None:
        status["initContainerStatuses"] = init_statuses
    meta: Doc = {
        "name": name,
        "namespace": namespace,
        "uid": uid,
        "resourceVersion": "48213",
        "creationTimestamp": stamp(created),
        "labels": {"app": name},
    }
    if annotations:
        meta["annotations"] = annotations
    if deleting:
        meta["deletionTimestamp"] = stamp(5)
        meta["deletionGracePeriodSeconds"] = 30
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}


def api(*docs: Doc) -> dict[str, ApiPod]:
    pods = [pod_from_dict(d) for d in docs]
    return {p.uid: p for p in pods}


# --------------------------------------------------------------------------
# Runtime objects
# --------------------------------------------------------------------------


def sandbox(
    label: str,
    *,
    uid: str = UID,
    name: str = "web",
    namespace: str = "shop",
    attempt: int = 0,
    ready: bool = True,
    created: float = 3590,
    pause_pid: int | None = 4100,
    annotations: dict[str, str] | None = None,
) -> Sandbox:
    return Sandbox(
        id=rid(label),
        pod=PodRef(name=name, namespace=namespace, uid=uid),
        state=SandboxState.READY if ready else SandboxState.NOTREADY,
        attempt=attempt,
        created_at=ago(created),
        runtime_handler="",
        labels={
            "io.kubernetes.pod.name": name,
            "io.kubernetes.pod.namespace": namespace,
            "io.kubernetes.pod.uid": uid,
        },
        annotations=annotations or {},
        pause_pid=pause_pid if ready else None,
    )


def ctr(
    label: str,
    name: str,
    sb: Sandbox,
    *,
    state: ContainerState = ContainerState.RUNNING,
    attempt: int = 0,
    created: float = 3580,
    started: float | None = None,
    finished: float | None = None,
    exit_code: int | None = None,
    reason: str | None = None,
    pid: int | None = None,
    mounts: tuple[Mount, ...] = (),
) -> Container:
    started_s = created - 1 if started is None else started
    exited = state is ContainerState.EXITED
    return Container(
        id=rid(label),
        name=name,
        sandbox_id=sb.id,
        pod=sb.pod,
        state=state,
        attempt=attempt,
        image=f"registry.example.com/shop/{name}:1.4",
        image_ref=f"sha256:{rid(name)}",
        created_at=ago(created),
        started_at=None if state is ContainerState.CREATED else ago(started_s),
        finished_at=ago(finished if finished is not None else 0) if exited else None,
        exit_code=(1 if exit_code is None else exit_code) if exited else None,
        reason=(reason or "Error") if exited else None,
        pid=(pid or 5000 + attempt) if state is ContainerState.RUNNING else None,
        mounts=mounts,
    )


def by_id(*objs: _T) -> dict[str, _T]:
    return {o.id: o for o in objs}


def views(
    pods: dict[str, ApiPod],
    sandboxes: tuple[Sandbox, ...] = (),
    containers: tuple[Container, ...] = (),
    *,
    api_synced: bool = True,
    now: datetime = NOW,
) -> list[PodView]:
    return build_pod_views(
        pods,
        by_id(*sandboxes),
        by_id(*containers),
        node_name=NODE,
        api_synced=api_synced,
        now=now,
    )


def only(pod_views: list[PodView]) -> PodView:
    assert len(pod_views) == 1, [(v.namespace, v.name, v.uid) for v in pod_views]
    return pod_views[0]


def kinds(view: PodView) -> list[str]:
    return [m.kind for m in view.mismatches]


def mismatch(view: PodView, kind: str) -> Mismatch:
    found = [m for m in view.mismatches if m.kind == kind]
    assert len(found) == 1, view.mismatches
    return found[0]


def cv(view: PodView, name: str) -> ContainerView:
    found = view.container(name)
    assert found is not None, [c.name for c in view.containers]
    return found


# --------------------------------------------------------------------------
# Roles, order, not-created
# --------------------------------------------------------------------------


def test_roles_follow_the_spec_and_order_is_init_app_ephemeral_then_runtime_only() -> None:
    sb = sandbox("sb")
    migrate = ctr("migrate", "migrate", sb, state=ContainerState.EXITED, exit_code=0)
    proxy = ctr("proxy", "proxy", sb)
    web = ctr("web", "web", sb)
    worker = ctr("worker", "worker", sb)
    debugger = ctr("debugger", "debugger", sb)
    # Left over from an earlier spec revision: no spec, no status.
    stray = ctr("stray", "legacy-agent", sb, state=ContainerState.EXITED)
    doc = pod_doc(
        "web",
        init=[cspec("migrate"), cspec("proxy", sidecar=True)],
        containers=[cspec("web"), cspec("worker")],
        ephemeral=[{"name": "debugger", "image": "busybox:1.36", "targetContainerName": "web"}],
        init_statuses=[
            cstatus(
                "migrate",
                migrate.id,
                state=terminated(migrate.id, finished=3500, reason="Completed", exit_code=0),
                ready=False,
            ),
            cstatus("proxy", proxy.id, state=running()),
        ],
        statuses=[
            cstatus("web", web.id, state=running()),
            cstatus("worker", worker.id, state=running()),
        ],
    )
    view = only(views(api(doc), (sb,), (migrate, proxy, web, worker, debugger, stray)))

    assert [(c.name, c.role) for c in view.containers] == [
        ("migrate", ContainerRole.INIT),
        ("proxy", ContainerRole.SIDECAR),
        ("web", ContainerRole.APP),
        ("worker", ContainerRole.APP),
        ("debugger", ContainerRole.EPHEMERAL),
        ("legacy-agent", None),
    ]
    assert cv(view, "legacy-agent").spec is None
    assert cv(view, "legacy-agent").api_status is None
    assert cv(view, "debugger").spec is not None
    assert cv(view, "debugger").api_status is None  # no ephemeralContainerStatuses yet
    assert cv(view, "debugger").ready is None
    assert cv(view, "migrate").state == "exited"
    assert cv(view, "migrate").exit_code == 0
    assert cv(view, "web").state == "running"
    assert cv(view, "web").pid == 5000
    assert (view.status, view.ready, view.restarts) == ("Running", "3/3", "0")
    assert view.api_known is True
    assert view.mismatches == ()


def test_runtime_only_names_follow_the_spec_even_when_few_are_running() -> None:
    sb = sandbox("sb")
    stray = ctr("stray", "old-sidecar", sb, state=ContainerState.EXITED)
    doc = pod_doc("web", containers=[cspec("web"), cspec("worker"), cspec("cron")])
    view = only(views(api(doc), (sb,), (stray,)))
    assert [(c.name, c.state) for c in view.containers] == [
        ("web", "not-created"),
        ("worker", "not-created"),
        ("cron", "not-created"),
        ("old-sidecar", "exited"),
    ]


def test_pod_just_scheduled_has_containers_not_created_and_no_alarm_yet() -> None:
    doc = pod_doc(
        "checkout",
        containers=[cspec("app"), cspec("metrics")],
        phase="Pending",
        created=4,
    )
    view = only(views(api(doc)))

    assert [c.state for c in view.containers] == ["not-created", "not-created"]
    assert all(c.current is None and c.attempts == () for c in view.containers)
    assert all(c.ready is None and c.restart_count == 0 for c in view.containers)
    assert (view.status, view.ready, view.phase) == ("Pending", "0/2", "Pending")
    assert view.sandboxes == ()
    assert view.current_sandbox is None
    assert view.mismatches == ()


def test_api_state_is_used_when_the_runtime_has_no_container() -> None:
    sb = sandbox("sb")
    doc = pod_doc(
        "web",
        phase="Pending",
        statuses=[
            cstatus(
                "web",
                None,
                state={"waiting": {"reason": "ContainerCreating"}},
                ready=False,
            )
        ],
    )
    view = only(views(api(doc), (sb,)))

    web = cv(view, "web")
    assert web.state == "waiting:ContainerCreating"
    assert web.id is None
    assert web.ready is False
    assert view.mismatches == ()


# --------------------------------------------------------------------------
# Attempts and the current instance
# --------------------------------------------------------------------------


def two_sandboxes() -> tuple[Sandbox, Sandbox]:
    # The pause process was killed once: attempt 0 stopped, attempt 1 serves.
    old = sandbox("sb-0", attempt=0, ready=False, created=3590)
    new = sandbox("sb-1", attempt=1, ready=True, created=1200, pause_pid=7300)
    return old, new


def test_attempts_are_kept_newest_first_across_two_sandboxes() -> None:
    old, new = two_sandboxes()
    a0 = ctr("web-0", "web", old, state=ContainerState.EXITED, attempt=0, created=3580)
    a1 = ctr("web-1", "web", old, state=ContainerState.EXITED, attempt=1, created=2400)
    a2 = ctr("web-2", "web", new, state=ContainerState.RUNNING, attempt=2, created=1190, pid=7311)
    doc = pod_doc(
        "web",
        statuses=[
            cstatus(
                "web",
                a2.id,
                state=running(started=1189),
                last_state=terminated(a1.id, finished=1210),
                restarts=2,
            )
        ],
    )
    view = only(views(api(doc), (old, new), (a0, a2, a1)))

    assert view.sandboxes == (new, old)
    assert view.current_sandbox == new
    web = cv(view, "web")
    assert web.current == a2
    assert web.attempts == (a1, a0)
    assert (web.id, web.pid, web.sandbox_id) == (a2.id, 7311, new.id)
    assert web.restart_count == 2
    assert web.state == "running"
    assert view.mismatches == ()


def test_current_is_the_container_the_api_names_even_when_a_newer_one_exists() -> None:
    sb = sandbox("sb")
    a0 = ctr("web-0", "web", sb, state=ContainerState.EXITED, attempt=0, created=300)
    a1 = ctr(
        "web-1",
        "web",
        sb,
        state=ContainerState.EXITED,
        attempt=1,
        created=200,
        finished=100,
        exit_code=137,
        reason="OOMKilled",
    )
    # Kubelet has created the next attempt but not started or reported it.
    a2 = ctr("web-2", "web", sb, state=ContainerState.CREATED, attempt=2, created=1)
    doc = pod_doc(
        "web",
        phase="Running",
        statuses=[
            cstatus(
                "web",
                a1.id,
                state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s"}},
                last_state=terminated(a1.id, finished=100, reason="OOMKilled", exit_code=137),
                ready=False,
                restarts=1,
            )
        ],
    )
    view = only(views(api(doc), (sb,), (a0, a1, a2)))

    web = cv(view, "web")
    assert web.current == a1
    assert web.attempts == (a2, a0)
    assert (web.state, web.exit_code, web.reason) == ("exited", 137, "OOMKilled")
    assert web.pid is None
    assert view.status == "CrashLoopBackOff"


def test_without_an_api_id_the_current_sandbox_wins_over_a_higher_attempt_elsewhere() -> None:
    old, new = two_sandboxes()
    # The runtime lost its records once, so attempts in the new sandbox restarted at 0.
    stale = ctr("web-old", "web", old, state=ContainerState.EXITED, attempt=4, created=3000)
    fresh = ctr("web-new", "web", new, state=ContainerState.RUNNING, attempt=0, created=1100)
    doc = pod_doc("web", phase="Pending", created=3600)
    view = only(views(api(doc), (old, new), (stale, fresh)))

    web = cv(view, "web")
    assert web.current == fresh
    assert web.attempts == (stale,)
    # Without an API status the runtime's highest attempt stands in.
    assert web.restart_count == 4


def test_sandbox_order_and_current_sandbox_prefers_ready() -> None:
    a = sandbox("sb-a", attempt=0, ready=True, created=3000)
    b = sandbox("sb-b", attempt=1, ready=False, created=100)
    view = only(views(api(pod_doc("web")), (a, b)))

    assert view.sandboxes == (b, a)
    # The newest attempt is being torn down; the ready one is what serves.
    assert view.current_sandbox == a


# --------------------------------------------------------------------------
# Mismatches: each one fires past the grace period, and not within it
# --------------------------------------------------------------------------


def test_no_sandbox_fires_after_grace_with_the_scheduling_time() -> None:
    doc = pod_doc("cart", phase="Pending", created=300, scheduled=120)
    view = only(views(api(doc)))

    m = mismatch(view, "no-sandbox")
    assert m.severity == "error"
    assert m.since == ago(120)
    assert m.evidence["age_seconds"] == 120
    assert "shop/cart" in m.message
    assert NODE in m.message


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param(pod_doc("cart", phase="Pending", created=20), id="within-grace"),
        pytest.param(pod_doc("cart", phase="Succeeded", created=900), id="terminal"),
        pytest.param(pod_doc("cart", phase="Failed", created=900), id="failed"),
        pytest.param(pod_doc("cart", created=900, deleting=True), id="being-deleted"),
    ],
)
def test_no_sandbox_does_not_fire(doc: Doc) -> None:
    view = only(views(api(doc)))
    assert view.sandboxes == ()
    assert "no-sandbox" not in kinds(view)


def test_no_sandbox_needs_a_trustworthy_api_view() -> None:
    doc = pod_doc("cart", phase="Pending", created=900)
    assert kinds(only(views(api(doc), api_synced=False))) == []


def test_pods_of_other_nodes_are_left_out_unless_this_runtime_has_them() -> None:
    elsewhere = pod_doc("cart", uid=OTHER_UID, node="node-b", created=900)
    assert views(api(elsewhere)) == []

    sb = sandbox("sb", uid=OTHER_UID, name="cart")
    view = only(views(api(elsewhere), (sb,)))
    assert view.api_known is True
    assert view.node_name == "node-b"
    assert view.sandboxes == (sb,)
    assert view.mismatches == ()


def test_orphans_fire_only_when_the_api_view_is_synced() -> None:
    sb = sandbox("sb-orphan", uid=OTHER_UID, name="old-job", created=600, pause_pid=8800)
    c = ctr("c-orphan", "main", sb, created=590, pid=8812)

    synced = only(views({}, (sb,), (c,)))
    assert kinds(synced) == ["orphan-sandbox", "orphan-container"]
    osb = mismatch(synced, "orphan-sandbox")
    assert osb.severity == "warning"
    assert osb.evidence["pause_pid"] == 8800
    assert osb.evidence["sandbox_id"] == sb.id
    assert osb.evidence["age_seconds"] == 600
    assert osb.evidence["age"] == "10m"
    assert OTHER_UID in osb.message
    oc = mismatch(synced, "orphan-container")
    assert oc.container == "main"
    assert oc.evidence["pid"] == 8812
    assert oc.evidence["age_seconds"] == 590

    unsynced = only(views({}, (sb,), (c,), api_synced=False))
    assert unsynced.api_known is False
    assert unsynced.mismatches == ()


def test_orphans_within_grace_are_not_flagged() -> None:
    sb = sandbox("sb-new", uid=OTHER_UID, name="fresh", created=10)
    c = ctr("c-new", "main", sb, created=8)
    view = only(views({}, (sb,), (c,)))
    assert view.api_known is False
    assert view.mismatches == ()


def test_orphan_of_a_static_pod_without_mirror_is_only_informational() -> None:
    sb = sandbox(
        "sb-static",
        uid="9d1e0c5ad1b1f0d6d2a3c4b5e6f70812",
        name="etcd-node-a",
        namespace="kube-system",
        annotations={"kubernetes.io/config.source": "file"},
    )
    m = mismatch(only(views({}, (sb,))), "orphan-sandbox")
    assert m.severity == "info"
    assert "static pod" in m.message


def test_static_pod_joins_its_mirror_pod_by_the_config_hash() -> None:
    config_hash = "9d1e0c5ad1b1f0d6d2a3c4b5e6f70812"
    sb = sandbox("sb-etcd", uid=config_hash, name="etcd-node-a", namespace="kube-system")
    c = ctr("etcd", "etcd", sb)
    doc = pod_doc(
        "etcd-node-a",
        namespace="kube-system",
        containers=[cspec("etcd")],
        annotations={
            "kubernetes.io/config.hash": config_hash,
            "kubernetes.io/config.mirror": config_hash,
            "kubernetes.io/config.source": "file",
        },
        statuses=[cstatus("etcd", c.id, state=running())],
    )
    view = only(views(api(doc), (sb,), (c,)))

    assert view.api_known is True
    assert view.uid == UID
    assert view.runtime_uid == config_hash
    assert cv(view, "etcd").current == c
    assert view.mismatches == ()


def test_multiple_ready_sandboxes_fires_after_grace() -> None:
    a = sandbox("sb-a", attempt=0, created=900, pause_pid=4100)
    b = sandbox("sb-b", attempt=1, created=120, pause_pid=4200)
    m = mismatch(only(views(api(pod_doc("web")), (a, b))), "multiple-ready-sandboxes")
    assert m.severity == "error"
    assert m.evidence["sandbox_ids"] == f"{b.id},{a.id}"
    assert m.evidence["attempts"] == "1,0"
    assert m.since == ago(120)


def test_multiple_ready_sandboxes_not_within_grace_nor_with_one_ready() -> None:
    a = sandbox("sb-a", attempt=0, created=900)
    b = sandbox("sb-b", attempt=1, created=5)
    assert kinds(only(views(api(pod_doc("web")), (a, b)))) == []
    c = sandbox("sb-c", attempt=1, ready=False, created=120)
    assert kinds(only(views(api(pod_doc("web")), (a, c)))) == []


def api_running_pod(container_id: str) -> Doc:
    return pod_doc("web", statuses=[cstatus("web", container_id, state=running(started=900))])


def test_api_running_runtime_exited_fires_when_the_exit_is_older_than_grace() -> None:
    sb = sandbox("sb")
    c = ctr(
        "web",
        "web",
        sb,
        state=ContainerState.EXITED,
        created=901,
        finished=90,
        exit_code=137,
        reason="OOMKilled",
    )
    view = only(views(api(api_running_pod(c.id)), (sb,), (c,)))

    m = mismatch(view, "api-running-runtime-exited")
    assert m.container == "web"
    assert m.evidence["exit_code"] == 137
    assert m.evidence["reason"] == "OOMKilled"
    assert m.since == ago(90)
    assert cv(view, "web").state == "exited"


def test_api_running_runtime_exited_waits_for_kubelet_within_grace() -> None:
    sb = sandbox("sb")
    c = ctr("web", "web", sb, state=ContainerState.EXITED, created=901, finished=3)
    view = only(views(api(api_running_pod(c.id)), (sb,), (c,)))
    assert kinds(view) == []
    assert kinds(only(views(api(api_running_pod(c.id)), (sb,), (c,), now=ago(-60)))) == [
        "api-running-runtime-exited"
    ]


def crashloop_pod(last_id: str) -> Doc:
    return pod_doc(
        "web",
        statuses=[
            cstatus(
                "web",
                last_id,
                state={"waiting": {"reason": "CrashLoopBackOff"}},
                last_state=terminated(last_id, finished=200),
                ready=False,
                restarts=1,
            )
        ],
    )


@pytest.mark.parametrize(("started", "fires"), [(120, True), (10, False)])
def test_api_not_running_runtime_running(started: float, fires: bool) -> None:
    sb = sandbox("sb")
    a0 = ctr("web-0", "web", sb, state=ContainerState.EXITED, created=400, finished=200)
    a1 = ctr("web-1", "web", sb, attempt=1, created=started + 1, started=started, pid=6600)
    view = only(views(api(crashloop_pod(a0.id)), (sb,), (a0, a1)))

    if fires:
        m = mismatch(view, "api-not-running-runtime-running")
        assert m.container == "web"
        assert m.evidence["container_id"] == a1.id
        assert m.evidence["api_state"] == "waiting:CrashLoopBackOff"
        assert m.evidence["pid"] == 6600
        assert m.since == ago(started)
    else:
        assert kinds(view) == []


def test_unknown_container_id_for_a_running_container() -> None:
    sb = sandbox("sb")
    gone = rid("web-vanished")
    view = only(views(api(api_running_pod(gone)), (sb,)))

    m = mismatch(view, "unknown-container-id")
    assert m.severity == "warning"
    assert m.container == "web"
    assert m.evidence["container_id"] == f"containerd://{gone}"
    assert gone[:13] in m.message


def test_unknown_container_id_not_within_grace() -> None:
    sb = sandbox("sb")
    gone = rid("web-just-started")
    doc = pod_doc("web", statuses=[cstatus("web", gone, state=running(started=4))])
    assert kinds(only(views(api(doc), (sb,)))) == []


def test_unknown_container_id_of_a_dead_instance_mentions_gc() -> None:
    sb = sandbox("sb")
    gone = rid("web-collected")
    view = only(views(api(crashloop_pod(gone)), (sb,)))
    m = mismatch(view, "unknown-container-id")
    assert m.severity == "info"
    assert "GC" in m.message
    assert m.since == ago(200)


def test_a_missing_last_state_container_is_not_flagged() -> None:
    sb = sandbox("sb")
    current = ctr("web-1", "web", sb, attempt=1, created=100)
    collected = rid("web-0-collected")
    doc = pod_doc(
        "web",
        statuses=[
            cstatus(
                "web",
                current.id,
                state=running(started=99),
                last_state=terminated(collected, finished=101),
                restarts=1,
            )
        ],
    )
    view = only(views(api(doc), (sb,), (current,)))
    assert view.mismatches == ()
    assert cv(view, "web").attempts == ()


def test_container_mismatches_need_a_trustworthy_api_view() -> None:
    sb = sandbox("sb")
    view = only(views(api(api_running_pod(rid("gone"))), (sb,), api_synced=False))
    assert view.mismatches == ()


# --------------------------------------------------------------------------
# Runtime-only pods
# --------------------------------------------------------------------------


def test_runtime_only_pod_gets_a_best_effort_view() -> None:
    old = sandbox("sb-0", uid=OTHER_UID, name="old-job", attempt=0, ready=False, created=900)
    new = sandbox("sb-1", uid=OTHER_UID, name="old-job", attempt=1, created=600)
    w0 = ctr("w0", "worker", old, state=ContainerState.EXITED, created=890)
    w1 = ctr("w1", "worker", new, attempt=1, created=590, pid=9100)
    s0 = ctr("s0", "exporter", new, created=590, pid=9200)
    view = only(views({}, (old, new), (w0, w1, s0), api_synced=False))

    assert (view.namespace, view.name, view.uid) == ("shop", "old-job", OTHER_UID)
    assert (view.status, view.ready, view.restarts) == ("Running (runtime only)", "-", "1")
    assert view.phase is None
    assert view.pod is None
    assert view.api_known is False
    assert view.node_name == NODE
    assert view.created_at == ago(900)
    assert view.current_sandbox == new
    assert [(c.name, c.role) for c in view.containers] == [("exporter", None), ("worker", None)]
    worker = cv(view, "worker")
    assert (worker.current, worker.attempts, worker.restart_count) == (w1, (w0,), 1)
    assert worker.ready is None


def test_runtime_only_pod_with_nothing_running_reads_stopped() -> None:
    sb = sandbox("sb", uid=OTHER_UID, name="old-job", ready=False)
    c = ctr("c", "main", sb, state=ContainerState.EXITED)
    assert only(views({}, (sb,), (c,), api_synced=False)).status == "Stopped (runtime only)"


# --------------------------------------------------------------------------
# Volumes
# --------------------------------------------------------------------------


def empty_dir_source(uid: str, name: str) -> str:
    return f"/var/lib/kubelet/pods/{uid}/volumes/kubernetes.io~empty-dir/{name}"


def shared_volume_pod(
    web_source: str | None, sidecar_source: str | None
) -> tuple[Doc, Sandbox, Container, Container]:
    sb = sandbox("sb")

    def mounts(source: str | None, path: str) -> tuple[Mount, ...]:
        if source is None:
            return ()
        return (
            Mount(destination=path, source=source, type="bind"),
            Mount(destination="/proc", source="proc", type="proc"),
        )

    web = ctr("web", "web", sb, mounts=mounts(web_source, "/var/cache/app"))
    shipper = ctr("shipper", "log-shipper", sb, mounts=mounts(sidecar_source, "/logs/"))
    doc = pod_doc(
        "web",
        containers=[
            cspec("web", mounts=[{"name": "cache", "mountPath": "/var/cache/app"}]),
            cspec(
                "log-shipper",
                mounts=[{"name": "cache", "mountPath": "/logs", "readOnly": True}],
            ),
        ],
        volumes=[{"name": "cache", "emptyDir": {}}],
        statuses=[
            cstatus("log-shipper", shipper.id, state=running()),
            cstatus("web", web.id, state=running()),
        ],
    )
    return doc, sb, web, shipper


def test_shared_empty_dir_with_the_same_host_source() -> None:
    source = empty_dir_source(UID, "cache")
    doc, sb, web, shipper = shared_volume_pod(source, source)
    view = only(views(api(doc), (sb,), (web, shipper)))

    cache = next(v for v in view.volumes if v.name == "cache")
    assert cache.kind == "emptyDir"
    assert cache.mounted_by == (
        VolumeUser("web", "/var/cache/app", False),
        ("log-shipper", "/logs", True),
    )
    assert cache.runtime_sources == (source,)
    assert cache.shared_in_runtime is True
    assert view.mismatches == ()
    # The token volume is mounted by both too; the runtime reported no mount for it.
    token = next(v for v in view.volumes if v.name == "kube-api-access-x7k2p")
    assert token.kind == "projected"
    assert token.shared_in_runtime is None
    assert [v.name for v in view.volumes] == ["kube-api-access-x7k2p", "cache"]


def test_different_host_sources_are_flagged_volume_not_shared() -> None:
    a = empty_dir_source(UID, "cache")
    b = "/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/x/volumes/cache"
    doc, sb, web, shipper = shared_volume_pod(a, b)
    view = only(views(api(doc), (sb,), (web, shipper)))

    cache = next(v for v in view.volumes if v.name == "cache")
    assert cache.shared_in_runtime is False
    assert cache.runtime_sources == (a, b)
    m = mismatch(view, "volume-not-shared")
    assert m.evidence["source:web"] == a
    assert m.evidence["source:log-shipper"] == b
    assert "cache" in m.message


def test_volume_sharing_is_unknown_without_runtime_mounts() -> None:
    doc, sb, web, shipper = shared_volume_pod(None, None)
    view = only(views(api(doc), (sb,), (web, shipper)))
    cache = next(v for v in view.volumes if v.name == "cache")
    assert cache.runtime_sources == ()
    assert cache.shared_in_runtime is None
    assert view.mismatches == ()


def test_sub_path_mounts_are_not_compared() -> None:
    sb = sandbox("sb")
    base = empty_dir_source(UID, "cache")
    web = ctr(
        "web",
        "web",
        sb,
        mounts=(Mount(destination="/data", source=base),),
    )
    init = ctr(
        "seed",
        "seed",
        sb,
        state=ContainerState.EXITED,
        exit_code=0,
        mounts=(Mount(destination="/seed", source=f"/var/lib/kubelet/pods/{UID}/subpath/0"),),
    )
    doc = pod_doc(
        "web",
        init=[cspec("seed", mounts=[{"name": "cache", "mountPath": "/seed", "subPath": "s"}])],
        containers=[cspec("web", mounts=[{"name": "cache", "mountPath": "/data"}])],
        volumes=[{"name": "cache", "emptyDir": {}}],
    )
    view = only(views(api(doc), (sb,), (web, init)))
    cache = next(v for v in view.volumes if v.name == "cache")
    assert len(cache.mounted_by) == 2
    assert len(cache.runtime_sources) == 2
    assert "volume-not-shared" not in kinds(view)


# --------------------------------------------------------------------------
# Listing and lookup
# --------------------------------------------------------------------------


def test_views_are_sorted_by_namespace_then_name() -> None:
    docs = [
        pod_doc("zeta", uid="u-1", namespace="shop"),
        pod_doc("alpha", uid="u-2", namespace="shop"),
        pod_doc("coredns", uid="u-3", namespace="kube-system"),
    ]
    orphan = sandbox("sb", uid="u-9", name="beta", namespace="shop", created=5)
    got = views(api(*docs), (orphan,), api_synced=False)
    assert [(v.namespace, v.name) for v in got] == [
        ("kube-system", "coredns"),
        ("shop", "alpha"),
        ("shop", "beta"),
        ("shop", "zeta"),
    ]


def test_build_pod_view_finds_one_pod_and_prefers_the_api_one() -> None:
    live = pod_doc("db-0", uid="uid-new", created=60)
    # The old pod's sandbox was recreated twice; attempts do not compare across UIDs.
    leftover = sandbox("sb-old", uid="uid-old", name="db-0", attempt=2, ready=False, created=900)
    fresh = sandbox("sb-new", uid="uid-new", name="db-0", created=55)
    pods = api(live)
    sbs = by_id(leftover, fresh)

    def one(namespace: str, name: str, pods: dict[str, ApiPod] = pods) -> PodView | None:
        return build_pod_view(
            pods,
            sbs,
            {},
            namespace=namespace,
            name=name,
            node_name=NODE,
            api_synced=True,
            now=NOW,
        )

    found = one("shop", "db-0")
    assert found is not None
    assert (found.uid, found.api_known, found.sandboxes) == ("uid-new", True, (fresh,))
    assert one("shop", "db-1") is None
    assert one("other", "db-0") is None

    gone = one("shop", "db-0", {})
    assert gone is not None
    # Leftovers only: the UID with the newest sandbox stands for the name.
    assert (gone.uid, gone.api_known) == ("uid-new", False)
    assert {m.kind for m in gone.mismatches} == {"orphan-sandbox"}

    listed = build_pod_views(pods, sbs, {}, node_name=NODE, api_synced=True, now=NOW)
    assert [(v.name, v.api_known) for v in listed] == [("db-0", True), ("db-0", False)]
    assert listed[0] == found
