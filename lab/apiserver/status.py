"""``Status`` bodies of the fake API server, and the error that carries one.

Messages, reasons and ``details`` follow what a real API server sends, since
clients (and the agent's own error mapping) key on ``reason`` and ``code``.

Owns every error body the server sends. Imports the standard library only.
"""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]


class ApiStatusError(Exception):
    """A request failed; ``status()`` is the body the server answers with."""

    def __init__(self, code: int, reason: str, message: str, details: JSON | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> JSON:
        """The Status body for this failure."""
        return failure_status(self.code, self.reason, self.message, self.details)


def failure_status(code: int, reason: str, message: str, details: JSON | None = None) -> JSON:
    """A ``Status`` object with ``status: Failure``, as the real server writes it."""
    body: JSON = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    }
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


def success_status(resource: str, name: str, uid: str) -> JSON:
    """The ``Status`` object a delete of a finished object answers with."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": name, "kind": resource, "uid": uid},
    }


def not_found(resource: str, name: str) -> ApiStatusError:
    """404 NotFound for one object."""
    return ApiStatusError(
        404, "NotFound", f'{resource} "{name}" not found', {"name": name, "kind": resource}
    )


def already_exists(resource: str, name: str) -> ApiStatusError:
    """409 AlreadyExists for a create of a name in use."""
    return ApiStatusError(
        409,
        "AlreadyExists",
        f'{resource} "{name}" already exists',
        {"name": name, "kind": resource},
    )


def conflict(resource: str, name: str, why: str) -> ApiStatusError:
    """409 Conflict: a stale resourceVersion or a failed precondition."""
    return ApiStatusError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {resource} "{name}": {why}',
        {"name": name, "kind": resource},
    )


STALE_OBJECT = (
    "the object has been modified; please apply your changes to the latest version and try again"
)


def bad_request(message: str) -> ApiStatusError:
    """400 BadRequest."""
    return ApiStatusError(400, "BadRequest", message)


def invalid(kind: str, name: str, field: str, cause_reason: str, detail: str) -> ApiStatusError:
    """A 422 naming one offending field, shaped like the server's validation errors."""
    return ApiStatusError(
        422,
        "Invalid",
        f'{kind} "{name}" is invalid: {field}: {detail}',
        {
            "name": name,
            "kind": kind,
            "causes": [{"reason": cause_reason, "message": detail, "field": field}],
        },
    )


def unprocessable(message: str) -> ApiStatusError:
    """422 Invalid, with the message as given."""
    return ApiStatusError(422, "Invalid", message)


def expired(message: str) -> ApiStatusError:
    """410 Expired: a watch or list from a resourceVersion no longer in the history."""
    return ApiStatusError(410, "Expired", message)


def route_not_found() -> ApiStatusError:
    """404 for a path that names no resource."""
    return ApiStatusError(404, "NotFound", "the server could not find the requested resource", {})


def method_not_allowed() -> ApiStatusError:
    """405 for a verb the resource does not serve."""
    return ApiStatusError(
        405,
        "MethodNotAllowed",
        "the server does not allow this method on the requested resource",
        {},
    )


def unauthorized() -> ApiStatusError:
    """401 for a missing or unknown bearer token."""
    return ApiStatusError(401, "Unauthorized", "Unauthorized")


def too_large(limit: int) -> ApiStatusError:
    """413 for a body over ``limit`` bytes."""
    return ApiStatusError(
        413, "RequestEntityTooLarge", f"Request entity too large: limit is {limit}"
    )


def unsupported_media_type(content_type: str) -> ApiStatusError:
    """415 for a PATCH body in a content type no patch strategy reads."""
    return ApiStatusError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format ({content_type or 'none'}) - "
        "accepted media types include: application/json-patch+json, "
        "application/merge-patch+json, application/strategic-merge-patch+json",
    )


def internal(message: str) -> ApiStatusError:
    """500 InternalError."""
    return ApiStatusError(500, "InternalError", message)
