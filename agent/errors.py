"""The agent's one exception hierarchy.

Adapters map library errors (grpc, kubernetes, psutil, OS) to these in one
place each. A class says what went wrong, never how to answer it: the HTTP
status of each is chosen in ``agent.api.errors`` alone, and is drawn here
only so the tree can be read in one place. ``kind`` is the ``error`` value
on the wire.

    class                        kind (error)          HTTP
    AgentError                   error                 500  anything else raised on purpose
    ├── CriError                 runtime_error         503  the container runtime (CRI)
    │   ├── RuntimeUnavailable   runtime_unavailable   503  socket missing, runtime down, deadline
    │   └── RuntimeCallFailed    runtime_call_failed   502  the runtime answered with an error
    ├── ApiServerError           api_server_error      503  the Kubernetes API server
    ├── NotFound                 not_found             404  no such object
    │   └── ProcessGone          process_gone          404  a PID vanished or is another process
    ├── Ambiguous                ambiguous_prefix      409  an ID prefix matches several objects
    ├── InvalidInput             invalid_input         422  a value the agent cannot use
    │   └── Inapplicable         refused               422  a bad signal, or no restart would follow
    ├── Forbidden                refused               403  not allowed, by policy or the kernel
    ├── Conflict                 refused               409  the target's state rules it out now
    ├── RateLimited              refused               429  too many, try again later
    └── Unavailable              refused               503  a capability this node lacks

The classes answering ``refused`` share that kind: to a client each is a
refusal, told apart by its status and, for kill-and-watch, by ``detail.rule``.

The bottom layer: imports the standard library only, no other part of the agent.
"""

from __future__ import annotations

from collections.abc import Sequence


class AgentError(Exception):
    """Base of every error the agent raises on purpose."""

    kind = "error"

    def __init__(self, message: str, **detail: object) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class CriError(AgentError):
    """Something went wrong talking to the container runtime."""

    kind = "runtime_error"


class RuntimeUnavailable(CriError):
    """The runtime cannot be reached (no socket, refused, deadline exceeded)."""

    kind = "runtime_unavailable"


class RuntimeCallFailed(CriError):
    """The runtime answered, with an error."""

    kind = "runtime_call_failed"

    def __init__(self, message: str, *, code: str, **detail: object) -> None:
        super().__init__(message, code=code, **detail)
        self.code = code


class ApiServerError(AgentError):
    """The Kubernetes API server cannot be reached or gave an unusable answer."""

    kind = "api_server_error"


class NotFound(AgentError):
    """What a request names does not exist."""

    kind = "not_found"


class ProcessGone(NotFound):
    """A process exited, or its PID now belongs to another process, while it was used."""

    kind = "process_gone"


class Ambiguous(AgentError):
    """An ID prefix matches more than one object."""

    kind = "ambiguous_prefix"

    def __init__(self, what: str, prefix: str, matches: Sequence[str]) -> None:
        super().__init__(
            f"{what} ID prefix {prefix!r} matches {len(matches)} {what}s; give more characters",
            prefix=prefix,
            matches=list(matches),
        )


class InvalidInput(AgentError):
    """A value the agent cannot use: malformed, out of range, or outside what is allowed."""

    kind = "invalid_input"


class Inapplicable(InvalidInput):
    """A kill request that cannot apply: an unknown signal, or a restart policy against it."""

    kind = "refused"


class Forbidden(AgentError):
    """Not allowed: by the agent's own policy or by the kernel's permissions."""

    kind = "refused"


class Conflict(AgentError):
    """The target's current state rules the request out (not running, a run in progress)."""

    kind = "refused"


class RateLimited(AgentError):
    """Too many requests of this kind; the detail says when to try again."""

    kind = "refused"


class Unavailable(AgentError):
    """A capability the request needs is missing on this node (pidfds, for one)."""

    kind = "refused"
