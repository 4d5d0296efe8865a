"""Why pods are stuck or crashing: the rules over evidence gathered on the node.

A route module: imports the HTTP edge's deps, schemas and renderings, the rules' findings
and the pod view.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import Response

from agent.api import render
from agent.api.deps import AgentDep, OutputDep, SnapshotDep
from agent.api.routes._common import DNS1123_LABEL, DNS1123_SUBDOMAIN, respond
from agent.api.schemas import (
    ErrorBody,
    EvidenceItem,
    FindingItem,
    NodeDiagnostics,
    PodDiagnosis,
)
from agent.diagnose import Finding
from agent.domain.podview import PodView

router = APIRouter(tags=["diagnosis"])


def finding_item(view: PodView, f: Finding) -> FindingItem:
    """The wire form of one finding about one pod."""
    return FindingItem(
        rule=f.rule,
        severity=f.severity,
        namespace=view.namespace,
        pod=view.name,
        container=f.container,
        summary=f.summary,
        evidence=[EvidenceItem(kind=e.kind, label=e.label, value=e.value) for e in f.evidence],
        cause=f.cause,
        next_steps=list(f.next_steps),
        since=f.since,
    )


@router.get(
    "/v1/pods/{namespace}/{name}/diagnosis",
    response_model=PodDiagnosis,
    responses={404: {"model": ErrorBody}, 503: {"model": ErrorBody}},
)
async def pod_diagnosis(
    agent: AgentDep,
    snap: SnapshotDep,
    fmt: OutputDep,
    namespace: Annotated[str, Path(max_length=63, pattern=DNS1123_LABEL)],
    name: Annotated[str, Path(max_length=253, pattern=DNS1123_SUBDOMAIN)],
) -> Response:
    """Why one pod is stuck or crashing, with the evidence."""
    found = await agent.diagnose_pod(snap, namespace, name)
    view = found.view
    body = PodDiagnosis(
        namespace=view.namespace,
        name=view.name,
        status=view.status,
        ready=view.ready,
        restarts=view.restarts,
        api=agent.pods.health.describe(),
        findings=[finding_item(view, f) for f in found.findings],
    )
    return respond(fmt, body, render.diagnosis)


@router.get(
    "/v1/diagnostics", response_model=NodeDiagnostics, responses={503: {"model": ErrorBody}}
)
async def node_diagnostics(agent: AgentDep, snap: SnapshotDep, fmt: OutputDep) -> Response:
    """The findings of every pod on this node, most severe first."""
    found = await agent.diagnose_node(snap)
    items = [finding_item(view, f) for view, f in found.items]
    body = NodeDiagnostics(
        node_name=agent.settings.node_name,
        pods_checked=found.pods_checked,
        pods_with_findings=len({(f.namespace, f.pod) for f in items}),
        items=items,
    )
    return respond(fmt, body, render.diagnostics)
