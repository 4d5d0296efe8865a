"""The agent's one exception hierarchy.

Adapters map library errors (grpc, kubernetes, psutil, OS) to these in one
place each; the HTTP edge maps these to status codes in one place.

    AgentError
    ├── RuntimeError_                 the container runtime (CRI)
    │   ├── RuntimeUnavailable        socket missing, runtime down, deadline hit   -> 503
    │   └── RuntimeCallFailed         the runtime answered with an error           -> 502
    ├── ApiServerError                the Kubernetes API server                    -> 503
    ├── LookupFailed                  what a request names does not resolve
    │   ├── NotFound                  no such object                               -> 404
    │   └── AmbiguousPrefix           an ID prefix matches more than one object    -> 409
    ├── InvalidInput                  a value the agent cannot use                 -> 422
    ├── Refused                       a guarded action said no                     -> 403/409/429
    └── ProcessGone                   a PID vanished while it was being read       -> 404
"""

from __future__ import annotations

from collections.abc import Sequence


class AgentError(Exception):
    """Base of every error the agent raises on purpose."""

    status_code = 500
    kind = "error"

    def __init__(self, message: str, **detail: object) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def to_body(self) -> dict[str, object]:
        body: dict[str, object] = {"error": self.kind, "message": self.message}
        if self.detail:
            body["detail"] = self.detail
        return body


class RuntimeError_(AgentError):  # the trailing underscore keeps the builtin visible
    """Something went wrong talking to the container runtime."""

    status_code = 503
    kind = "runtime_error"


class RuntimeUnavailable(RuntimeError_):
    """The runtime cannot be reached (no socket, refused, deadline exceeded)."""

    status_code = 503
    kind = "runtime_unavailable"


class RuntimeCallFailed(RuntimeError_):
    """The runtime answered, with an error."""

    status_code = 502
    kind = "runtime_call_failed"

    def __init__(self, message: str, *, code: str, **detail: object) -> None:
        super().__init__(message, code=code, **detail)
        self.code = code


class ApiServerError(AgentError):
    status_code = 503
    kind = "api_server_error"


class LookupFailed(AgentError):
    status_code = 404
    kind = "lookup_failed"


class NotFound(LookupFailed):
    status_code = 404
    kind = "not_found"


class AmbiguousPrefix(LookupFailed):
    status_code = 409
    kind = "ambiguous_prefix"

    def __init__(self, what: str, prefix: str, matches: Sequence[str]) -> None:
        super().__init__(
            f"{what} ID prefix {prefix!r} matches {len(matches)} {what}s; give more characters",
            prefix=prefix,
            matches=list(matches),
        )


class InvalidInput(AgentError):
    status_code = 422
    kind = "invalid_input"


class Refused(AgentError):
    status_code = 403
    kind = "refused"

    def __init__(self, message: str, *, status_code: int = 403, **detail: object) -> None:
        super().__init__(message, **detail)
        self.status_code = status_code


class ProcessGone(NotFound):
    kind = "process_gone"
