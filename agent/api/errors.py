"""The one place where the agent's errors become HTTP answers.

Every error body is JSON with ``error`` (a stable kind), ``message`` (what is
wrong, for a person) and, where there is more, ``detail``. Nothing below
sends a traceback: unexpected errors are logged here and answered 500 with
the exception's type only.

Part of the HTTP edge: imports the errors, fastapi and starlette only.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from agent.errors import (
    AgentError,
    Ambiguous,
    ApiServerError,
    Conflict,
    CriError,
    Forbidden,
    InvalidInput,
    NotFound,
    RateLimited,
    RuntimeCallFailed,
    Unavailable,
)

log = logging.getLogger(__name__)

# The status of an error is that of the nearest class in its MRO found here,
# so a new subclass answers like its parent until it is given a row of its own.
STATUS: dict[type[AgentError], int] = {
    AgentError: 500,
    CriError: 503,
    RuntimeCallFailed: 502,
    ApiServerError: 503,
    NotFound: 404,
    Ambiguous: 409,
    InvalidInput: 422,
    Forbidden: 403,
    Conflict: 409,
    RateLimited: 429,
    Unavailable: 503,
}


def status_for(error: AgentError | type[AgentError]) -> int:
    """The HTTP status an agent error (or error class) is answered with."""
    cls = error if isinstance(error, type) else type(error)
    for base in cls.__mro__:
        if base in STATUS:
            return STATUS[base]
    raise TypeError(f"{cls.__name__} is not an AgentError")


def error_body(error: AgentError) -> dict[str, object]:
    """The JSON body of an agent error: its kind, its message and any detail."""
    body: dict[str, object] = {"error": error.kind, "message": error.message}
    if error.detail:
        body["detail"] = error.detail
    return body


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error the app can raise as JSON, with its status code."""

    @app.exception_handler(AgentError)
    async def agent_error(_: Request, exc: AgentError) -> JSONResponse:
        return JSONResponse(status_code=status_for(exc), content=error_body(exc))

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
