"""Containers as the runtime holds them, every attempt, with their host PIDs.

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
    ContainerNameFilter,
    FullCmdlineDep,
    NamespaceFilter,
    PodFilter,
    respond,
)
from agent.api.schemas import ContainerDetail, ContainerItem, ErrorBody, ItemList
from agent.domain.model import ContainerState

router = APIRouter(prefix="/v1/containers", tags=["runtime"])

_ERRORS: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorBody},
    409: {"model": ErrorBody, "description": "ambiguous ID prefix"},
    503: {"model": ErrorBody, "description": "container runtime unavailable"},
}


@router.get("", response_model=ItemList[ContainerItem], responses=_ERRORS)
def list_containers(
    snap: SnapshotDep,
    fmt: OutputDep,
    namespace: NamespaceFilter = None,
    pod: PodFilter = None,
    name: ContainerNameFilter = None,
    state: Annotated[ContainerState | None, Query()] = None,
    sandbox: Annotated[
        str | None, Query(pattern=ID_PATTERN, description="sandbox ID or prefix")
    ] = None,
) -> Response:
    """Every container the runtime holds, each container's newest attempt first."""
    items = [
        ContainerItem.from_container(c)
        for c in sorted(
            snap.containers.values(),
            key=lambda c: (c.pod.namespace, c.pod.name, c.name, -c.attempt),
        )
        if (namespace is None or c.pod.namespace == namespace)
        and (pod is None or c.pod.name == pod)
        and (name is None or c.name == name)
        and (state is None or c.state == state)
        and (sandbox is None or c.sandbox_id.startswith(sandbox.lower()))
    ]
    return respond(fmt, ItemList[ContainerItem](items=items), lambda m: render.containers(m.items))


@router.get("/{container_id}", response_model=ContainerDetail, responses=_ERRORS)
def get_container(
    agent: AgentDep,
    fmt: OutputDep,
    full: FullCmdlineDep,
    container_id: Annotated[str, Path(pattern=ID_PATTERN, description="full ID or unique prefix")],
) -> Response:
    """One container: state, attempt, PID, its process tree, namespaces and mounts."""
    found = agent.container_detail(container_id)
    tree = found.tree
    body = ContainerDetail.build(
        found.container, tree.process if tree else None, tree, full_cmdline=full
    )
    return respond(fmt, body, render.container_detail)
