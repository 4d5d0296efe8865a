"""The app factory: one Agent, the routes, auth, error mapping, and the lifespan that runs it.

The HTTP edge: it may import the services and everything below them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from agent.api.auth import AuthConfig, install_auth
from agent.api.errors import install_error_handlers
from agent.api.routes import ROUTERS
from agent.api.schemas import ErrorBody
from agent.kube import PodCacheLike, access_reviewer_from_settings
from agent.services.agent import Agent
from agent.services.node import NodeState
from agent.settings import Settings

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    node_state: NodeState | None = None,
    pod_cache: PodCacheLike | None = None,
) -> FastAPI:
    """Build the HTTP app around one Agent; node state and pod cache are injectable for tests."""
    agent = Agent(settings, node=node_state, pods=pod_cache)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await agent.start()
        try:
            yield
        finally:
            await agent.stop()
            if app.state.reviewer is not None:
                app.state.reviewer.close()

    app = FastAPI(
        title="podlens",
        summary="What runs on this node, what is wrong with it, and why.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.agent = agent
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
            max_token_length=settings.auth_max_token_length,
            review_burst=settings.auth_review_burst,
            review_rate_per_second=settings.auth_review_rate_per_second,
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
