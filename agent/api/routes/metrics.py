"""Prometheus exposition.

A route module: imports the HTTP edge's deps and prometheus_client only.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from agent.api.deps import AgentDep

router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=Response)
def metrics(agent: AgentDep) -> Response:
    """Prometheus exposition of the agent's metrics."""
    return Response(agent.metrics.render(), media_type=CONTENT_TYPE_LATEST)
