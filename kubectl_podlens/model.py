"""The plugin's own types: agents as the API server lists them, and fan-out answers.

Imports the standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, TypeVar

T = TypeVar("T")

# Where the agents are, as daemonset/ deploys them, and whom their tokens are for.
AGENT_NAMESPACE = "podlens-system"
AGENT_SELECTOR = "app.kubernetes.io/name=podlens,app.kubernetes.io/component=agent"
TOKEN_AUDIENCE = "podlens"


@dataclass(frozen=True, slots=True)
class AgentPod:
    """One node's agent pod, as the API server holds it."""

    node: str
    namespace: str
    name: str
    ready: bool
    # Why the pod is not ready (its phase, a waiting reason), for people.
    not_ready_because: str
    port: int
    image: str


class Reason(StrEnum):
    """Why a node is missing from an answer."""

    NO_AGENT = "no agent"
    NOT_READY = "agent not ready"
    TIMED_OUT = "timed out"
    UNAUTHORIZED = "401 unauthorized"
    FORBIDDEN = "403 forbidden"
    UNREACHABLE = "unreachable"
    FAILED = "agent error"


@dataclass(frozen=True, slots=True)
class Unreached:
    """A node that did not answer, and why."""

    node: str
    reason: Reason
    detail: str


@dataclass(frozen=True, slots=True)
class Target:
    """A node the command needs, with its agent pod if it has one."""

    node: str
    agent: AgentPod | None


@dataclass(slots=True)
class FanOut(Generic[T]):
    """Each node's answer, and the nodes that gave none; never a node silently missing."""

    answers: dict[str, T] = field(default_factory=dict)
    unreached: list[Unreached] = field(default_factory=list)
    # Per node: seconds from its turn to its answer (or to giving up).
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def partial(self) -> bool:
        """Some node the command needed did not answer."""
        return bool(self.unreached)
