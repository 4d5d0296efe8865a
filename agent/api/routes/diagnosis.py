"""Why pods are stuck or crashing: the rules over evidence gathered on the node."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from agent.api import render
from agent.api.deps import NodeDep, OutputDep, PodsDep, SnapshotDep, ViewMemoDep
from agent.api.routes._common import DNS1123_LABEL, DNS1123_SUBDOMAIN, respond
from agent.api.schemas import (
    ErrorBody,
    EvidenceItem,
    FindingItem,
    NodeDiagnostics,
    PodDiagnosis,
)
from agent.diagnose import DEFAULT_THRESHOLDS, Finding, Thresholds, diagnose
from agent.domain.podview import PodView
from agent.logs import LastWords, TailMemo
from agent.services import evidence
from agent.services.pods import node_pod_view, node_pod_views
from agent.settings import Settings

router = APIRouter(tags=["diagnosis"])

_SEVERITY_ORDER = {"critical": 0, "error": 1, "warning": 2, "info": 3}


def thresholds(settings: Settings) -> Thresholds:
    return dataclasses.replace(
        DEFAULT_THRESHOLDS,
        init_waiting_warning=timedelta(seconds=settings.diagnosis_init_waiting_seconds),
        creating_warning=timedelta(seconds=settings.diagnosis_creating_seconds),
        not_ready_warning=timedelta(seconds=settings.diagnosis_not_ready_seconds),
        port_grace=timedelta(seconds=settings.diagnosis_port_grace_seconds),
    )


def finding_item(view: PodView, f: Finding) -> FindingItem:
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
    request: Request,
    node: NodeDep,
    pods: PodsDep,
    snap: SnapshotDep,
    fmt: OutputDep,
    namespace: Annotated[str, Path(max_length=63, pattern=DNS1123_LABEL)],
    name: Annotated[str, Path(max_length=253, pattern=DNS1123_SUBDOMAIN)],
) -> Response:
    now = datetime.now(UTC)
    view = node_pod_view(node.settings, pods, snap, namespace, name, now)
    last_words: LastWords = request.app.state.last_words
    tails: TailMemo = request.app.state.tail_memo
    (facts,) = await evidence.gather_many(
        [view], pods, node.client, node.settings, last_words, now, tails
    )
    body = PodDiagnosis(
        namespace=view.namespace,
        name=view.name,
        status=view.status,
        ready=view.ready,
        restarts=view.restarts,
        api=pods.health.describe(),
        findings=[
            finding_item(view, f) for f in diagnose(facts, thresholds=thresholds(node.settings))
        ],
    )
    return respond(fmt, body, render.diagnosis)


@router.get(
    "/v1/diagnostics", response_model=NodeDiagnostics, responses={503: {"model": ErrorBody}}
)
async def node_diagnostics(
    request: Request,
    node: NodeDep,
    pods: PodsDep,
    snap: SnapshotDep,
    fmt: OutputDep,
    memo: ViewMemoDep,
) -> Response:
    now = datetime.now(UTC)
    views = node_pod_views(node.settings, pods, snap, now, memo)
    # Healthy pods have nothing to find; gathering evidence for them is wasted I/O.
    candidates = [v for v in views if evidence.needs_attention(v)]
    last_words: LastWords = request.app.state.last_words
    tails: TailMemo = request.app.state.tail_memo
    inputs = await evidence.gather_many(
        candidates, pods, node.client, node.settings, last_words, now, tails
    )
    items = [
        finding_item(view, f)
        for view, facts in zip(candidates, inputs, strict=True)
        for f in diagnose(facts, thresholds=thresholds(node.settings))
    ]
    items.sort(key=lambda f: (_SEVERITY_ORDER[f.severity], f.namespace, f.pod))
    body = NodeDiagnostics(
        node_name=node.settings.node_name,
        pods_checked=len(views),
        pods_with_findings=len({(f.namespace, f.pod) for f in items}),
        items=items,
    )
    return respond(fmt, body, render.diagnostics)
