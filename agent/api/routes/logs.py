"""A container's log, read from the CRI log files on the node (works with the API down)."""

from __future__ import annotations

import dataclasses
from pathlib import Path as FsPath
from typing import Annotated

import anyio
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import PlainTextResponse

from agent.api.deps import NodeDep, OutputDep, OutputFormat, PodsDep, SnapshotDep
from agent.api.routes._common import DNS1123_LABEL, DNS1123_SUBDOMAIN
from agent.api.schemas import ErrorBody, LogLineItem, LogsItem
from agent.domain.model import Container
from agent.domain.podview import ContainerView
from agent.errors import InvalidInput, NotFound
from agent.logs import LastWords, TailResult, previous_log_path, tail
from agent.services.pods import node_pod_view

router = APIRouter(tags=["logs"])

MAX_TAIL = 10_000


def _choose(containers: tuple[ContainerView, ...], name: str | None, where: str) -> ContainerView:
    names = [c.name for c in containers]
    if name is None:
        if len(containers) == 1:
            return containers[0]
        raise InvalidInput(
            f"pod {where} has {len(names)} containers; choose one with ?container= "
            f"({', '.join(names)})",
            containers=names,
        )
    for c in containers:
        if c.name == name:
            return c
    raise NotFound(
        f"pod {where} has no container {name!r}; its containers: {', '.join(names) or 'none'}",
        containers=names,
    )


def _previous_instance(c: ContainerView) -> Container | None:
    """The instance ``kubectl logs --previous`` reads: the one the API's lastState names.

    In CrashLoopBackOff that is the attempt that just exited (the runtime's
    newest); without the API, the newest attempt before the current one.
    """
    last = c.api_status.last_state if c.api_status is not None else None
    if last is not None and last.kind == "terminated" and last.container_id:
        bare = last.container_id.split("://", 1)[-1]
        for candidate in (c.current, *c.attempts):
            if candidate is not None and candidate.id == bare:
                return candidate
    return c.attempts[0] if c.attempts else None


def _read(path: FsPath, lines: int, roots: list[FsPath]) -> TailResult:
    return tail(path, lines, allowed_roots=roots)


@router.get(
    "/v1/pods/{namespace}/{name}/logs",
    response_model=LogsItem,
    responses={
        404: {"model": ErrorBody, "description": "no such pod, container or log"},
        422: {"model": ErrorBody, "description": "bad parameters, or a container must be chosen"},
    },
)
async def get_logs(
    request: Request,
    node: NodeDep,
    pods: PodsDep,
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
    where = f"{namespace}/{name}"
    view = node_pod_view(node.settings, pods, snap, namespace, name)
    chosen = _choose(view.containers, container, where)
    wanted: Container | None = chosen.current
    if previous:
        wanted = _previous_instance(chosen)
    attempt = wanted.attempt if wanted is not None else None
    path: FsPath | None = FsPath(wanted.log_path) if wanted and wanted.log_path else None
    current = chosen.current
    if previous and path is None and current is not None and current.log_path and current.attempt:
        # The runtime no longer holds the dead container; its file may remain.
        path = previous_log_path(FsPath(current.log_path), current.attempt)
        attempt = current.attempt - 1
    roots = list(node.settings.log_roots)
    if path is not None:
        roots.append(path.parent)

    result: TailResult | None = None
    source = "file"
    if path is not None:
        try:
            result = await anyio.to_thread.run_sync(_read, path, tail_lines, roots)
        except NotFound:
            result = None
    if result is None and attempt is not None:
        last_words: LastWords = request.app.state.last_words
        result = last_words.recall(view.runtime_uid or view.uid, chosen.name, attempt)
        source = "kept-after-exit"
        if result is not None:
            result = dataclasses.replace(
                result,
                lines=result.lines[-tail_lines:],
                truncated=result.truncated or len(result.lines) > tail_lines,
            )
    if result is None:
        which = "previous attempt" if previous else "current attempt"
        raise NotFound(
            f"no log for the {which} of container {chosen.name} in {where}"
            + ("" if chosen.current else ": the runtime holds no container for it yet"),
            container=chosen.name,
        )
    body = LogsItem(
        namespace=namespace,
        pod=name,
        container=chosen.name,
        attempt=attempt,
        previous=previous,
        source=source,  # type: ignore[arg-type]
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
