"""The one place where the agent's errors become HTTP answers.

Every error body is JSON with ``error`` (a stable kind), ``message`` (what is
wrong, for a person) and, where there is more, ``detail``. Nothing below
sends a traceback: unexpected errors are logged here and answered 500 with
the exception's type only.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from agent.errors import AgentError

log = logging.getLogger(__name__)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error the app can raise as JSON, with its status code."""

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
