"""The app factory: routes, error mapping, and the lifespan that runs the node state."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from agent.api.metrics import Metrics
from agent.api.routes import ROUTERS
from agent.errors import AgentError
from agent.heal import AuditLog, HealManager
from agent.kube import PodCacheLike, pod_cache_from_settings
from agent.node import NodeState
from agent.settings import Settings

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    node_state: NodeState | None = None,
    pod_cache: PodCacheLike | None = None,
) -> FastAPI:
    """Build the HTTP app. The node state and pod cache are injectable for tests."""
    state = node_state if node_state is not None else NodeState(settings)
    cache = pod_cache if pod_cache is not None else pod_cache_from_settings(settings)

    registry = Metrics(state, cache)
    healer = HealManager(
        settings,
        state,
        cache,
        AuditLog(settings.audit_log_path),
        on_finished=registry.observe_run,
        on_refused=registry.refused,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        healer.bind_loop()
        cache.start()
        task = asyncio.create_task(state.run(), name="node-refresh")
        try:
            yield
        finally:
            await healer.shutdown()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await asyncio.to_thread(cache.stop)

    app = FastAPI(
        title="podlens",
        summary="What runs on this node, what is wrong with it, and why.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.node = state
    app.state.pods = cache
    app.state.heal = healer
    app.state.metrics = registry
    _install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AgentError)
    async def agent_error(_: Request, exc: AgentError) -> JSONResponse:
        return JSONResponse(status_code=exc.status_code, content=exc.to_body())

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error.get("loc", ()))
            problems.append({"field": where, "problem": error.get("msg", "invalid")})
        summary = "; ".join(f"{p['field']}: {p['problem']}" for p in problems)
        return JSONResponse(
            status_code=422,
            content={
                "error": "invalid_input",
                "message": summary,
                "detail": {"problems": problems},
            },
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path}"
        return JSONResponse(
            status_code=exc.status_code,
            content={"error": "http_error", "message": message},
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Logged with its traceback here; never sent to the client.
        log.exception("unhandled error serving %s %s", request.method, request.url.path)
        return JSONResponse(
            status_code=500,
            content={"error": "internal", "message": f"internal error ({type(exc).__name__})"},
        )
