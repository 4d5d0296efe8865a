"""Liveness and readiness, for probes and for people.

A route module: imports the HTTP edge's auth, deps and schemas only.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from agent.api.auth import CallerDep
from agent.api.deps import AgentDep
from agent.api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """Alive: the event loop serves."""
    # Alive means the event loop serves; an unreachable runtime is a readiness
    # matter, and restarting the agent would not fix it. Both probes run on
    # the loop, not in a worker thread, so busy workers cannot fail them.
    return Health(status="ok", checks={"http": "ok"})


@router.get(
    "/readyz",
    response_model=Health,
    response_model_exclude_none=True,
    responses={503: {"model": Health, "description": "not ready, with the reason"}},
)
async def readyz(agent: AgentDep, caller: CallerDep) -> Health | JSONResponse:
    """Ready when the runtime is reachable and synced; degraded when the API server is away.

    The checks (endpoints, the runtime's and the API server's errors) only for
    a caller who may read; the kubelet's probes send no token and need only
    the verdict.
    """
    # Ready needs the runtime; an API server that is away only degrades the
    # answers (the runtime's view is still served), so it does not fail readiness.
    health = agent.node.health
    api = agent.pods.health
    checks = {"api": api.describe()}
    if health.connected and health.synced:
        checks["runtime"] = f"ok ({health.endpoint})"
        return Health(
            status="ok" if api.state != "unavailable" else "degraded",
            checks=checks if caller.may_read else None,
        )
    reason = health.reason or "not synced yet"
    checks["runtime"] = f"unavailable since {health.since.isoformat()}: {reason}"
    body = Health(status="unavailable", checks=checks if caller.may_read else None)
    return JSONResponse(status_code=503, content=body.model_dump(mode="json", exclude_none=True))
