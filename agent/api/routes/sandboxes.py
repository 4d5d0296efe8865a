"""Pod sandboxes as the runtime holds them, with their pause processes.

A route module: imports the HTTP edge's deps, schemas and renderings, and the domain model.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from agent.api import render
from agent.api.deps import AgentDep, OutputDep, SnapshotDep
from agent.api.routes._common import (
    ID_PATTERN,
    FullCmdlineDep,
    NamespaceFilter,
    PodFilter,
    respond,
)
from agent.api.schemas import ErrorBody, ItemList, SandboxDetail, SandboxItem
from agent.domain.model import SandboxState

router = APIRouter(prefix="/v1/sandboxes", tags=["runtime"])

_ERRORS: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorBody},
    409: {"model": ErrorBody, "description": "ambiguous ID prefix"},
    503: {"model": ErrorBody, "description": "container runtime unavailable"},
}


@router.get("", response_model=ItemList[SandboxItem], responses=_ERRORS)
def list_sandboxes(
    snap: SnapshotDep,
    fmt: OutputDep,
    namespace: NamespaceFilter = None,
    pod: PodFilter = None,
    state: Annotated[SandboxState | None, Query()] = None,
) -> Response:
    """Every pod sandbox the runtime holds, newest attempt first, with its container count."""
    counts: dict[str, int] = {}
    for c in snap.containers.values():
        counts[c.sandbox_id] = counts.get(c.sandbox_id, 0) + 1
    items = [
        SandboxItem.from_sandbox(s, counts.get(s.id, 0))
        for s in sorted(
            snap.sandboxes.values(), key=lambda s: (s.pod.namespace, s.pod.name, -s.attempt)
        )
        if (namespace is None or s.pod.namespace == namespace)
        and (pod is None or s.pod.name == pod)
        and (state is None or s.state == state)
    ]
    return respond(fmt, ItemList[SandboxItem](items=items), lambda m: render.sandboxes(m.items))


@router.get("/{sandbox_id}", response_model=SandboxDetail, responses=_ERRORS)
def get_sandbox(
    agent: AgentDep,
    fmt: OutputDep,
    full: FullCmdlineDep,
    sandbox_id: Annotated[str, Path(pattern=ID_PATTERN, description="full ID or unique prefix")],
) -> Response:
    """One sandbox: its pause process, namespaces and containers."""
    found = agent.sandbox_detail(sandbox_id)
    body = SandboxDetail.build(
        found.sandbox, list(found.containers), found.pause, full_cmdline=full
    )
    return respond(fmt, body, render.sandbox_detail)
