"""A container's log, read from the CRI log files on the node (works with the API down).

A route module: imports the HTTP edge's deps, name patterns and schemas, the log adapter's
line type and the pods service's read result.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Path, Query
from fastapi.responses import PlainTextResponse, Response

from agent.api.deps import AgentDep, OutputDep, OutputFormat, SnapshotDep
from agent.api.routes._common import DNS1123_LABEL, DNS1123_SUBDOMAIN
from agent.api.schemas import ErrorBody, LogLineItem, LogsItem
from agent.logs import MAX_LINE_BYTES, LogLine
from agent.services.pods import LogRead

router = APIRouter(tags=["logs"])

MAX_TAIL = 10_000
# What a line costs in a JSON answer besides its text: the other fields.
_JSON_LINE_OVERHEAD = len(
    LogLineItem(at=None, stream="stdout", text="", partial=False, cut=False).model_dump_json()
) + len('"2026-11-21T12:00:00.123456Z",')
CUT_TEXT = f" [line cut at {MAX_LINE_BYTES // 1024} KiB]"


def _size(line: LogLine, fmt: OutputFormat) -> int:
    """Bytes the line takes in the answer (JSON escapes control characters to six bytes)."""
    if fmt is OutputFormat.TEXT:
        return len(line.text.encode()) + 1 + (len(CUT_TEXT) if line.cut else 0)
    return len(json.dumps(line.text, ensure_ascii=False).encode()) + _JSON_LINE_OVERHEAD


def fit(lines: Sequence[LogLine], budget: int, fmt: OutputFormat) -> tuple[LogLine, ...]:
    """The newest lines whose answer fits in ``budget`` bytes."""
    used = 0
    start = len(lines)
    while start > 0:
        used += _size(lines[start - 1], fmt)
        if used > budget:
            break
        start -= 1
    return tuple(lines[start:])


def answer(
    read: LogRead,
    fmt: OutputFormat,
    budget: int,
    *,
    namespace: str,
    pod: str,
    previous: bool,
    tail: int,
) -> Response:
    """The answer as bytes, at most about ``budget`` of them: older lines left out past it."""
    result = read.result
    shown = fit(result.lines, budget, fmt)
    note = result.note
    if len(shown) < len(result.lines):
        capped = (
            f"the answer is capped at {budget // 1024} KiB: the {len(result.lines) - len(shown)} "
            f"oldest of the {len(result.lines)} lines read are left out (ask for fewer with ?tail=)"
        )
        note = f"{note}; {capped}" if note else capped
    if fmt is OutputFormat.TEXT:
        text = "".join(line.text + (CUT_TEXT if line.cut else "") + "\n" for line in shown)
        return PlainTextResponse(text)
    body = LogsItem(
        namespace=namespace,
        pod=pod,
        container=read.container,
        attempt=read.attempt,
        source=read.source,
        files=list(result.files),
        truncated=result.truncated or len(shown) < len(result.lines),
        note=note,
        lines=[
            LogLineItem(
                at=line.at, stream=line.stream, text=line.text, partial=line.partial, cut=line.cut
            )
            for line in shown
        ],
        previous=previous,
        tail=tail,
    )
    # Straight to bytes: no str copy of an answer that may be megabytes.
    return Response(body.__pydantic_serializer__.to_json(body), media_type="application/json")


@router.get(
    "/v1/pods/{namespace}/{name}/logs",
    response_model=LogsItem,
    responses={
        404: {"model": ErrorBody, "description": "no such pod, container or log"},
        422: {
            "model": ErrorBody,
            "description": "bad parameters, a container must be chosen, or the log lies "
            "outside the log directories",
        },
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
) -> Response:
    """A container's log from the CRI log files, or the lines kept after its exit.

    Lines longer than 16 KiB keep their beginning and are marked ``cut``; an
    answer larger than the agent's limit leaves out the oldest lines and
    says so in ``note``.
    """
    budget = agent.settings.log_response_max_bytes

    def build() -> Response:
        read = agent.read_log(snap, namespace, name, container, previous=previous, lines=tail_lines)
        return answer(
            read, fmt, budget, namespace=namespace, pod=name, previous=previous, tail=tail_lines
        )

    # Reading, decoding and serializing a large log is the agent's biggest
    # use of memory: a bounded number at once, each off the event loop.
    async with agent.log_slot():
        return await anyio.to_thread.run_sync(build)
