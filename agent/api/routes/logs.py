"""A container's log, read from the CRI log files on the node (works with the API down)."""

from __future__ import annotations

import functools
from typing import Annotated

import anyio
from fastapi import APIRouter, Path, Query
from fastapi.responses import PlainTextResponse

from agent.api.deps import AgentDep, OutputDep, OutputFormat, SnapshotDep
from agent.api.routes._common import DNS1123_LABEL, DNS1123_SUBDOMAIN
from agent.api.schemas import ErrorBody, LogLineItem, LogsItem

router = APIRouter(tags=["logs"])

MAX_TAIL = 10_000


@router.get(
    "/v1/pods/{namespace}/{name}/logs",
    response_model=LogsItem,
    responses={
        404: {"model": ErrorBody, "description": "no such pod, container or log"},
        422: {"model": ErrorBody, "description": "bad parameters, or a container must be chosen"},
    },
)
async def get_logs(
    agent: AgentDep,
    snap: SnapshotDep,
    fmt: OutputDep,
    namespace: Annotated[str, Path(max_length=63, pattern=DNS1123_LABEL)],
    name: Annotated[str, Path(max_length=253, pattern=DNS1123_SUBDOMAIN)],
    container: Annotated[str | None, Query(max_length=63, pattern=DNS1123_LABEL)] = None,
    previous: Annotated[bool, Query(description="the attempt before the current one")] = False,
    tail_lines: Annotated[
        int, Query(alias="tail", ge=1, le=MAX_TAIL, description="how many lines from the end")
    ] = 100,
) -> LogsItem | PlainTextResponse:
    """A container's log from the CRI log files, or the lines kept after its exit."""
    read = await anyio.to_thread.run_sync(
        functools.partial(
            agent.read_log,
            snap,
            namespace,
            name,
            container,
            previous=previous,
            lines=tail_lines,
        )
    )
    result = read.result
    body = LogsItem(
        namespace=namespace,
        pod=name,
        container=read.container,
        attempt=read.attempt,
        previous=previous,
        source=read.source,
        files=list(result.files),
        truncated=result.truncated,
        note=result.note,
        tail=tail_lines,
        lines=[
            LogLineItem(at=line.at, stream=line.stream, text=line.text, partial=line.partial)
            for line in result.lines
        ],
    )
    if fmt is OutputFormat.TEXT:
        return PlainTextResponse("".join(line.text + "\n" for line in body.lines))
    return body
