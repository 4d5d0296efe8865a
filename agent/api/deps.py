"""Dependencies shared by the routes: the Agent, the live snapshot, the output format.

They are coroutines because they never block: FastAPI would otherwise run
each in the worker threads, which slow routes may all be holding.

Part of the HTTP edge: imports the Agent and its snapshot type, and fastapi.
"""

from __future__ import annotations

import enum
from typing import Annotated

from fastapi import Depends, Query, Request

from agent.services.agent import Agent
from agent.services.node import Snapshot


class OutputFormat(enum.StrEnum):
    """How an answer is written: JSON, or an aligned text table."""

    JSON = "json"
    TEXT = "text"


async def get_agent(request: Request) -> Agent:
    """The one Agent the app was built with."""
    agent: Agent = request.app.state.agent
    return agent


async def get_live_snapshot(agent: Annotated[Agent, Depends(get_agent)]) -> Snapshot:
    """The current snapshot, or a 503 when the runtime cannot be trusted as current.

    While the API server names a container or sandbox the snapshot lacks (a
    pod starting), it waits briefly for the refresh that looks for it.
    """
    return await agent.fresh_snapshot()


async def get_output_format(
    request: Request,
    output: Annotated[
        OutputFormat | None,
        Query(description="json (default) or text; `Accept: text/plain` also selects text"),
    ] = None,
) -> OutputFormat:
    """JSON unless ``?output=text`` or an Accept header that prefers text/plain."""
    if output is not None:
        return output
    accept = request.headers.get("accept", "")
    # Text only when asked for explicitly and preferred to JSON: curl's */*
    # and browsers keep getting JSON.
    if "text/plain" in accept and "application/json" not in accept:
        return OutputFormat.TEXT
    return OutputFormat.JSON


AgentDep = Annotated[Agent, Depends(get_agent)]
SnapshotDep = Annotated[Snapshot, Depends(get_live_snapshot)]
OutputDep = Annotated[OutputFormat, Depends(get_output_format)]
