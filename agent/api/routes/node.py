"""What this node is: runtime identity, capabilities, counts.

A route module: imports the HTTP edge's deps, schemas and renderings, and the domain model.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from agent.api import render
from agent.api.deps import AgentDep, OutputDep
from agent.api.routes._common import respond
from agent.api.schemas import ApiSection, Capabilities, Counts, NodeInfo, RuntimeSection
from agent.domain.model import ContainerState, RuntimeKind, SandboxState

router = APIRouter(prefix="/v1", tags=["node"])


@router.get("/node", response_model=NodeInfo)
def get_node_info(agent: AgentDep, fmt: OutputDep) -> Response:
    """What this node is: runtime identity, capabilities, counts."""
    node, pods = agent.node, agent.pods
    # Answers even while the runtime is down: this is where people look to see why.
    health = node.health
    snap = node.snapshot
    info = health.info
    pause: str = "unknown"
    if info is not None:
        pause = {RuntimeKind.CONTAINERD: "always", RuntimeKind.CRIO: "per-pod"}.get(
            info.kind, "unknown"
        )
    containers = snap.containers.values()
    body = NodeInfo(
        node_name=node.settings.node_name,
        runtime=RuntimeSection(
            connected=health.connected,
            since=health.since,
            reason=health.reason,
            endpoint=health.endpoint,
            name=info.runtime_name if info else None,
            version=info.runtime_version if info else None,
            cri_api_version=info.cri_api_version if info else None,
        ),
        api=ApiSection(
            state=pods.health.state,  # type: ignore[arg-type]
            detail=pods.health.describe(),
            since=pods.health.since,
            pods_on_node=len(pods.pods),
        ),
        capabilities=Capabilities(
            change_source="events" if health.change_source == "events" else "relist",
            change_source_reason=health.change_source_reason,
            relist_interval_seconds=node.relist_interval,
            event_stream_breaks=node.event_stream_breaks,
            events_received=node.events_received,
            optional_calls=dict(node.optional_calls),
            pidfd_exit_notifications=node.pidfd_unavailable is None,
            pidfd_unavailable=node.pidfd_unavailable,
            pause_processes=pause,  # type: ignore[arg-type]
        ),
        counts=Counts(
            sandboxes=len(snap.sandboxes),
            sandboxes_ready=sum(
                1 for s in snap.sandboxes.values() if s.state == SandboxState.READY
            ),
            containers=len(snap.containers),
            containers_running=sum(1 for c in containers if c.state == ContainerState.RUNNING),
            containers_exited=sum(1 for c in containers if c.state == ContainerState.EXITED),
            pods=len({s.pod.uid for s in snap.sandboxes.values()}),
        ),
        snapshot_version=snap.version,
        snapshot_taken_at=snap.taken_at,
    )
    return respond(fmt, body, render.node)
