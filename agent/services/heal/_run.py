"""A kill-and-watch run: what was asked, the plan, and the timeline as it unfolds.

Part of the heal service: imports the standard library only.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class RunState(enum.StrEnum):
    RUNNING = "running"
    HEALED = "healed"
    NOT_HEALED = "not_healed"
    FAILED = "failed"


# The phases in the order they normally happen, each named after the source
# that reports it. A run records each phase once, when it is first seen.
CONTAINER_PHASES = (
    "signal_sent",
    "process_gone",
    "runtime_exited",
    "api_terminated",
    "runtime_recreated",
    "runtime_started",
    "api_running",
    "api_ready",
)
SANDBOX_PHASES = (
    "signal_sent",
    "process_gone",
    "runtime_sandbox_notready",
    "api_not_ready",
    "runtime_new_sandbox",
    "runtime_init_rerun",
    "runtime_started",
    "api_ready",
)


@dataclass(frozen=True, slots=True)
class Target:
    namespace: str
    pod: str
    pod_uid: str
    container: str | None  # None: the sandbox (its pause process)
    container_id: str | None
    sandbox_id: str
    pid: int
    pid_started_at: datetime
    attempt: int  # of the container, or of the sandbox
    restart_count: int | None  # the API's, before the kill

    @property
    def kind(self) -> str:
        return "container" if self.container is not None else "sandbox"

    def describe(self) -> str:
        what = f"container {self.container}" if self.container else "the pause process"
        return f"{what} of {self.namespace}/{self.pod} (PID {self.pid})"


@dataclass(frozen=True, slots=True)
class Plan:
    target: Target
    signal: int
    signal_name: str
    timeout_seconds: float
    expected_attempt: int
    expected_delay_seconds: float
    expected_delay_reason: str
    restart_policy: str
    steps: tuple[str, ...]


@dataclass(slots=True)
class Phase:
    name: str
    at: datetime
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class HealRun:
    id: str
    plan: Plan
    requested_by: str
    requested_at: datetime
    dry_run: bool
    state: RunState = RunState.RUNNING
    phases: list[Phase] = field(default_factory=list)
    verdict: str = ""
    time_to_recover_seconds: float | None = None
    finished_at: datetime | None = None
    diagnosis_url: str | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def has(self, name: str) -> bool:
        return any(p.name == name for p in self.phases)

    def phase(self, name: str) -> Phase | None:
        return next((p for p in self.phases if p.name == name), None)

    def record(self, name: str, at: datetime, **detail: Any) -> bool:
        """Record a phase the first time it is seen; later sightings are ignored."""
        if self.has(name):
            return False
        self.phases.append(Phase(name, at, detail))
        self.phases.sort(key=lambda p: p.at)
        self._notify()
        return True

    def finish(self, state: RunState, verdict: str, at: datetime) -> None:
        self.state = state
        self.verdict = verdict
        self.finished_at = at
        self._notify()

    def _notify(self) -> None:
        # Wake every current stream reader; each waits on a fresh event after.
        self.changed.set()
        self.changed = asyncio.Event()

    @property
    def done(self) -> bool:
        return self.state is not RunState.RUNNING
