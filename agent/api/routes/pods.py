"""Pods: the runtime's view joined with the API server's, as kubectl would name it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path as FsPath
from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from agent import host
from agent.api import render
from agent.api.deps import NodeDep, OutputDep, PodsDep, SnapshotDep, ViewMemoDep
from agent.api.routes._common import DNS1123_LABEL, DNS1123_SUBDOMAIN, NamespaceFilter, respond
from agent.api.schemas import (
    AttemptItem,
    ErrorBody,
    EventItem,
    ItemList,
    MismatchItem,
    PodContainerItem,
    PodViewItem,
    ProcessTreeItem,
    SandboxItem,
    SharedVolumeItem,
    VolumeUserItem,
)
from agent.domain.podview import ContainerView, PodView
from agent.errors import ApiServerError, ProcessGone
from agent.kube import PodCacheLike
from agent.services.node import Snapshot
from agent.services.pods import node_pod_view, node_pod_views

router = APIRouter(prefix="/v1/pods", tags=["pods"])

_ERRORS: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorBody},
    503: {"model": ErrorBody, "description": "container runtime unavailable"},
}
# kubectl STATUS strings that need no attention.
_QUIET_STATUSES = frozenset({"Running", "Completed", "Succeeded"})


def is_problem(view: PodView) -> bool:
    if view.mismatches or view.status not in _QUIET_STATUSES:
        return True
    if view.status == "Running" and "/" in view.ready:
        ready, total = view.ready.split("/", 1)
        return ready != total
    return False


def _container_item(c: ContainerView) -> PodContainerItem:
    return PodContainerItem(
        name=c.name,
        role=c.role.value if c.role is not None else None,
        state=c.state,
        ready=c.ready,
        restart_count=c.restart_count,
        pid=c.pid,
        id=c.id,
        image=(c.current.image if c.current else None) or (c.spec.image if c.spec else None),
        exit_code=c.exit_code,
        reason=c.reason,
        sandbox_id=c.sandbox_id,
        attempts=[AttemptItem.from_container(a) for a in c.attempts],
    )


def pod_item(view: PodView, snap: Snapshot, pods: PodCacheLike) -> PodViewItem:
    counts: dict[str, int] = {}
    for c in view.containers:
        if c.current is not None:
            counts[c.current.sandbox_id] = counts.get(c.current.sandbox_id, 0) + 1
    return PodViewItem(
        namespace=view.namespace,
        name=view.name,
        uid=view.uid,
        status=view.status,
        ready=view.ready,
        restarts=view.restarts,
        phase=view.phase,
        api=pods.health.describe(),
        api_known=view.api_known,
        node_name=view.node_name,
        created_at=view.created_at,
        sandboxes=[
            SandboxItem.from_sandbox(s, len(snap.containers_in(s.id))) for s in view.sandboxes
        ],
        containers=[_container_item(c) for c in view.containers],
        mismatches=[
            MismatchItem(
                kind=m.kind,
                severity=m.severity,
                message=m.message,
                container=m.container,
                since=m.since,
                evidence=dict(m.evidence),
            )
            for m in view.mismatches
        ],
        volumes=[
            SharedVolumeItem(
                name=v.name,
                kind=v.kind,
                mounted_by=[
                    VolumeUserItem(
                        container=u.container, mount_path=u.mount_path, read_only=u.read_only
                    )
                    for u in v.mounted_by
                ],
                runtime_sources=list(v.runtime_sources),
                shared_in_runtime=v.shared_in_runtime,
            )
            for v in view.volumes
        ],
    )


@router.get("", response_model=ItemList[PodViewItem], responses=_ERRORS)
def list_pods(
    node: NodeDep,
    pods: PodsDep,
    snap: SnapshotDep,
    fmt: OutputDep,
    memo: ViewMemoDep,
    namespace: NamespaceFilter = None,
    status: Annotated[
        str | None,
        Query(
            max_length=64,
            pattern=r"^[A-Za-z0-9:/ ()-]+$",
            description="kubectl STATUS to match exactly, e.g. CrashLoopBackOff or Init:0/2",
        ),
    ] = None,
    problems: Annotated[
        bool, Query(description="only pods that need attention (status, readiness, mismatches)")
    ] = False,
) -> Response:
    views = node_pod_views(node.settings, pods, snap, memo=memo)
    items = [
        pod_item(v, snap, pods)
        for v in views
        if (namespace is None or v.namespace == namespace)
        and (status is None or v.status == status)
        and (not problems or is_problem(v))
    ]
    return respond(fmt, ItemList[PodViewItem](items=items), lambda m: render.pods(m.items))


@router.get("/{namespace}/{name}", response_model=PodViewItem, responses=_ERRORS)
def get_pod(
    node: NodeDep,
    pods: PodsDep,
    snap: SnapshotDep,
    fmt: OutputDep,
    namespace: Annotated[str, Path(max_length=63, pattern=DNS1123_LABEL)],
    name: Annotated[str, Path(max_length=253, pattern=DNS1123_SUBDOMAIN)],
) -> Response:
    view = node_pod_view(node.settings, pods, snap, namespace, name)
    item = pod_item(view, snap, pods)
    _add_process_facts(item, view, node.settings.proc_root)
    if view.api_known:
        try:
            item.events = [
                EventItem(
                    type=e.type,
                    reason=e.reason,
                    message=e.message,
                    count=e.count,
                    last_seen=e.last_seen,
                    source=e.source_component or e.reporting_component,
                )
                for e in pods.events_for(view.namespace, view.uid)
            ]
        except ApiServerError as exc:
            item.events_error = exc.message
    return respond(fmt, item, render.pod_detail)


def _add_process_facts(item: PodViewItem, view: PodView, root: FsPath) -> None:
    """Process trees, and which namespaces each container shares with the pause process."""
    pause_ns: dict[str, int] | None = None
    sandbox = view.current_sandbox
    if sandbox is not None and sandbox.pause_pid is not None:
        try:
            pause_ns = host.read_process(sandbox.pause_pid, root).namespaces
        except ProcessGone:
            pause_ns = None
    if pause_ns:
        item.pause_shares_with_host = _shared_with_host(pause_ns, root)
    parents = host.parent_map(root)
    for container in item.containers:
        if container.pid is None:
            continue
        try:
            tree = host.process_tree(container.pid, root, parents=parents)
        except ProcessGone:
            continue
        container.process_tree = ProcessTreeItem.from_node(tree)
        if pause_ns:
            mine = tree.process.namespaces
            container.shares_with_pause = {
                kind: mine.get(kind) == inode
                for kind, inode in sorted(pause_ns.items())
                if kind in mine
            }


def _shared_with_host(namespaces: Mapping[str, int], root: FsPath) -> list[str] | None:
    """Which of these namespaces are the node's initial ones, or None if unknown.

    kthreadd (PID 2, parent 0) lives in every initial namespace and stays
    readable where PID 1 may not be; without it (an agent outside the host
    PID namespace) PID 1 of the agent's view answers for that view.
    """
    reference: dict[str, int] = {}
    for pid in (2, 1):
        try:
            info = host.read_process(pid, root)
        except ProcessGone:
            continue
        if pid == 2 and (info.ppid != 0 or info.name != "kthreadd"):
            continue
        reference = info.namespaces
        if reference:
            break
    if not reference:  # unreadable without ptrace rights over the process
        return None
    return sorted(kind for kind, inode in namespaces.items() if reference.get(kind) == inode)
