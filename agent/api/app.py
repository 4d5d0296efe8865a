"""The app factory: routes, error mapping, and the lifespan that runs the node state."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path as FsPath
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from agent.api.auth import AuthConfig, install_auth
from agent.api.errors import install_error_handlers
from agent.api.routes import ROUTERS
from agent.api.schemas import ErrorBody
from agent.domain.model import Container
from agent.errors import AgentError
from agent.kube import PodCacheLike, access_reviewer_from_settings, pod_cache_from_settings
from agent.logs import AttemptKey, LastWords, TailMemo
from agent.services.heal import AuditLog, HealManager
from agent.services.metrics import Metrics
from agent.services.node import NodeState
from agent.services.pods import PodViewMemo
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

    last_words = LastWords(lines=settings.last_words_lines)

    def keep_last_words(container: Container) -> None:
        # Read the dead attempt's last lines before kubelet's GC removes the file.
        if container.log_path:
            # The path comes from the runtime itself, not from a request.
            key = AttemptKey(container.pod.uid, container.name, container.attempt)
            asyncio.get_running_loop().run_in_executor(
                None, _remember, last_words, key, FsPath(container.log_path)
            )

    state.add_exit_listener(keep_last_words)
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
            if app.state.reviewer is not None:
                app.state.reviewer.close()

    app = FastAPI(
        title="podlens",
        summary="What runs on this node, what is wrong with it, and why.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.node = state
    app.state.pods = cache
    app.state.view_memo = PodViewMemo()
    app.state.heal = healer
    app.state.metrics = registry
    app.state.last_words = last_words
    app.state.tail_memo = TailMemo()
    install_error_handlers(app)
    reviewer = access_reviewer_from_settings(
        settings,
        timeout_seconds=settings.auth_timeout_seconds,
        audiences=settings.auth_token_audiences,
    )
    app.state.reviewer = reviewer
    install_auth(
        app,
        AuthConfig(
            mode=settings.resolved_auth_mode,
            node_name=settings.node_name,
            trust_loopback=settings.trust_loopback,
            cache_seconds=settings.auth_cache_seconds,
            timeout_seconds=settings.auth_timeout_seconds,
        ),
        reviewer,
    )
    for router in ROUTERS:
        app.include_router(router)
    _document_errors(app)
    return app


def _document_errors(app: FastAPI) -> None:
    """Make the OpenAPI document show the 422 body the agent really sends."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, summary=app.summary, routes=app.routes
            )
            error = {"$ref": "#/components/schemas/ErrorBody"}
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    invalid = operation.get("responses", {}).get("422")
                    if invalid is not None:
                        invalid["content"] = {"application/json": {"schema": error}}
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.setdefault("ErrorBody", ErrorBody.model_json_schema())
            for unused in ("HTTPValidationError", "ValidationError"):
                components.pop(unused, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _remember(last_words: LastWords, key: AttemptKey, path: FsPath) -> None:
    try:
        last_words.remember(key, path)
    except AgentError as exc:
        log.info("could not keep the last log lines of %s: %s", key, exc.message)
