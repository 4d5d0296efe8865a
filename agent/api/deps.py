"""Dependencies shared by the routes: the node state, the output format.

They are coroutines because they never block: FastAPI would otherwise run
each in the worker threads, which slow routes may all be holding.
"""

from __future__ import annotations

import enum
from typing import Annotated

from fastapi import Depends, Query, Request

from agent.kube import PodCacheLike
from agent.services.node import NodeState, Snapshot
from agent.services.pods import PodViewMemo
from agent.settings import Settings


class OutputFormat(enum.StrEnum):
    JSON = "json"
    TEXT = "text"


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_node(request: Request) -> NodeState:
    node: NodeState = request.app.state.node
    return node


async def get_pods(request: Request) -> PodCacheLike:
    pods: PodCacheLike = request.app.state.pods
    return pods


async def get_view_memo(request: Request) -> PodViewMemo:
    memo: PodViewMemo = request.app.state.view_memo
    return memo


async def get_live_snapshot(node: Annotated[NodeState, Depends(get_node)]) -> Snapshot:
    """The current snapshot, or a 503 when the runtime cannot be trusted as current."""
    return node.live_snapshot()


async def get_output_format(
    request: Request,
    output: Annotated[
        OutputFormat | None,
        Query(description="json (default) or text; `Accept: text/plain` also selects text"),
    ] = None,
) -> OutputFormat:
    if output is not None:
        return output
    accept = request.headers.get("accept", "")
    # Text only when asked for explicitly and preferred to JSON: curl's */*
    # and browsers keep getting JSON.
    if "text/plain" in accept and "application/json" not in accept:
        return OutputFormat.TEXT
    return OutputFormat.JSON


SettingsDep = Annotated[Settings, Depends(get_settings)]
NodeDep = Annotated[NodeState, Depends(get_node)]
PodsDep = Annotated[PodCacheLike, Depends(get_pods)]
SnapshotDep = Annotated[Snapshot, Depends(get_live_snapshot)]
OutputDep = Annotated[OutputFormat, Depends(get_output_format)]
ViewMemoDep = Annotated[PodViewMemo, Depends(get_view_memo)]
