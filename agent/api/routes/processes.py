"""Host PID -> container -> pod.

A route module: imports the HTTP edge's deps, schemas and renderings only.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import Response

from agent.api import render
from agent.api.deps import AgentDep, OutputDep
from agent.api.routes._common import FullCmdlineDep, respond
from agent.api.schemas import ContainerItem, ErrorBody, ProcessItem, ProcessLookup, SandboxItem

router = APIRouter(prefix="/v1/processes", tags=["runtime"])

# Linux caps pid_max at 2^22.
_PID_MAX = 4_194_304


@router.get(
    "/{pid}",
    response_model=ProcessLookup,
    responses={
        403: {"model": ErrorBody, "description": "full_cmdline without the logs permission"},
        404: {"model": ErrorBody, "description": "no such process, or not in any container"},
        503: {"model": ErrorBody, "description": "container runtime unavailable"},
    },
)
def get_process(
    agent: AgentDep,
    fmt: OutputDep,
    full: FullCmdlineDep,
    pid: Annotated[int, Path(ge=1, le=_PID_MAX, description="host PID")],
) -> Response:
    """Any host PID -> container -> pod."""
    owner = agent.lookup_process(pid)
    sandbox = owner.sandbox
    body = ProcessLookup(
        process=ProcessItem.from_info(owner.process, full_cmdline=full),
        matched_by=owner.matched_by,  # type: ignore[arg-type]
        container=ContainerItem.from_container(owner.container) if owner.container else None,
        sandbox=(
            SandboxItem.from_sandbox(sandbox, len(agent.node.snapshot.containers_in(sandbox.id)))
            if sandbox
            else None
        ),
        pod=owner.pod.name,
        namespace=owner.pod.namespace,
        pod_uid=owner.pod.uid,
    )
    return respond(fmt, body, render.process_lookup)
