"""What the node state needs from a container runtime, apart from how it is reached.

``CriClient`` speaks it over CRI gRPC; tests give the node state an in-memory
runtime that speaks it too. Every method answers in the agent's own types and
raises the agent's own errors: ``RuntimeUnavailable`` when the runtime cannot be
reached (including a deadline hit), ``RuntimeCallFailed`` when it answered with
an error, ``NotFound`` for an object it no longer has.

Part of the CRI adapter: imports the domain model and the standard library only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from agent.domain.model import Container, ContainerEvent, RuntimeInfo, Sandbox


class EventsUnsupported(Exception):
    """The runtime offers no container event stream (answer: relist)."""


class CallUnimplemented(Exception):
    """The runtime answered UNIMPLEMENTED to an optional call: normal, not a failure."""

    def __init__(self, method: str, detail: str = "") -> None:
        super().__init__(f"runtime does not implement {method}" + (f": {detail}" if detail else ""))
        self.method = method


class RuntimeClient(Protocol):
    """One connection to a container runtime, as the node state uses it."""

    async def version(self) -> RuntimeInfo:
        """The runtime's name and versions; the first call on a new connection."""
        ...

    async def list_sandboxes(self) -> list[Sandbox]:
        """Every pod sandbox, as the list call gives it (no PID, no network)."""
        ...

    async def list_containers(self) -> list[Container]:
        """Every container, as the list call gives it (no PID, no exit details)."""
        ...

    async def sandbox_status(self, sandbox_id: str, *, verbose: bool = True) -> Sandbox:
        """The sandbox's status; ``verbose`` adds the pause PID and namespaces."""
        ...

    async def container_status(
        self, listed: Container, *, verbose: bool = True
    ) -> tuple[Container, bool]:
        """``listed`` completed from its status, and whether its PID needs a start-time check."""
        ...

    async def image_present(self, image: str) -> bool:
        """Whether the node holds ``image``."""
        ...

    def container_events(self) -> AsyncIterator[ContainerEvent]:
        """Container events as they happen, ending in an error.

        ``EventsUnsupported`` when the runtime has no stream (relist instead);
        ``RuntimeUnavailable`` when a working stream breaks or ends.
        """
        ...

    async def list_pod_sandbox_metrics(self) -> int:
        """How many pod sandboxes the runtime reports metrics for.

        ``CallUnimplemented`` where the runtime does not offer the call.
        """
        ...

    async def close(self) -> None:
        """Let go of the connection."""
        ...
