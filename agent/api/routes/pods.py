"""Pods: the runtime's view joined with the API server's, as kubectl would name it.

A route module: imports the HTTP edge's deps, schemas and renderings, the pod view, the
pod cache's type and the node snapshot.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from agent.api import render
from agent.api.deps import AgentDep, OutputDep, SnapshotDep
from agent.api.routes._common import (
    DNS1123_LABEL,
    DNS1123_SUBDOMAIN,
    FullCmdlineDep,
    NamespaceFilter,
    respond,
)
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
from agent.kube import PodCacheLike
from agent.services.node import Snapshot
from agent.services.pods import needs_attention

router = APIRouter(prefix="/v1/pods", tags=["pods"])

_ERRORS: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorBody},
    503: {"model": ErrorBody, "description": "container runtime unavailable"},
}


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
    """The wire form of a joined pod view."""
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
        needs_attention=needs_attention(view),
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
    agent: AgentDep,
    snap: SnapshotDep,
    fmt: OutputDep,
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
        bool,
        Query(
            description="only pods that need attention (status, readiness, mismatches, restarts)"
        ),
    ] = False,
) -> Response:
    """The pods of this node, joined: kubectl's columns, sandboxes, containers, mismatches."""
    views = agent.find_pods(snap, namespace=namespace, status=status, problems=problems)
    items = [pod_item(v, snap, agent.pods) for v in views]
    return respond(fmt, ItemList[PodViewItem](items=items), lambda m: render.pods(m.items))


@router.get("/{namespace}/{name}", response_model=PodViewItem, responses=_ERRORS)
def get_pod(
    agent: AgentDep,
    snap: SnapshotDep,
    fmt: OutputDep,
    full: FullCmdlineDep,
    namespace: Annotated[str, Path(max_length=63, pattern=DNS1123_LABEL)],
    name: Annotated[str, Path(max_length=253, pattern=DNS1123_SUBDOMAIN)],
) -> Response:
    """One pod, with process trees, namespaces shared with the pause process, and events."""
    detail = agent.pod_detail(snap, namespace, name)
    item = pod_item(detail.view, snap, agent.pods)
    facts = detail.processes
    item.pause_shares_with_host = facts.pause_shares_with_host
    item.namespace_sharing_unknown = facts.sharing_unknown
    for container in item.containers:
        tree = facts.trees.get(container.name)
        if tree is None:
            continue
        container.process_tree = ProcessTreeItem.from_node(tree, full_cmdline=full)
        shares = facts.shares_with_pause.get(container.name)
        if shares is not None:
            container.shares_with_pause = dict(shares)
    if detail.events_error is not None:
        item.events_error = detail.events_error
    elif detail.view.api_known:
        item.events = [
            EventItem(
                type=e.type,
                reason=e.reason,
                message=e.message,
                count=e.count,
                last_seen=e.last_seen,
                source=e.source_component or e.reporting_component,
            )
            for e in detail.events
        ]
    return respond(fmt, item, render.pod_detail)
