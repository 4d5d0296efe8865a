"""What the rules read and what they answer.

Part of the rules: imports the domain and the standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from agent.domain.kubemodel import ApiEvent, ApiPod
from agent.domain.podview import PodView
from agent.domain.severity import Severity
from agent.domain.times import iso_or_none

EvidenceKind = Literal["api", "runtime", "exit-code", "log", "event", "process", "check"]


@dataclass(frozen=True, slots=True)
class Evidence:
    """One fact and where it came from."""

    kind: EvidenceKind
    label: str
    value: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "label": self.label, "value": self.value}


@dataclass(frozen=True, slots=True)
class Finding:
    rule: str
    severity: Severity
    container: str | None
    summary: str
    evidence: tuple[Evidence, ...]
    cause: str
    next_steps: tuple[str, ...]
    since: datetime | None

    def to_dict(self) -> dict[str, object]:
        return {
            "rule": self.rule,
            "severity": self.severity,
            "container": self.container,
            "summary": self.summary,
            "evidence": [e.to_dict() for e in self.evidence],
            "cause": self.cause,
            "next_steps": list(self.next_steps),
            "since": iso_or_none(self.since),
        }


@dataclass(frozen=True, slots=True)
class ContainerLogs:
    """The last lines of one container's logs, read by the caller.

    ``previous`` is what ``kubectl logs --previous`` shows: the attempt the
    API's ``lastState`` names (during CrashLoopBackOff the one that just
    exited), else the attempt before the current one; ``previous_attempt`` is
    its restart number. ``source`` and ``previous_source`` say where each was
    read (a log file path, "cri", or "lines kept after exit").
    """

    current: tuple[str, ...] = ()
    previous: tuple[str, ...] = ()
    previous_attempt: int | None = None
    source: str = ""
    previous_source: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class DiagnosisInput:
    """Everything the rules may look at; the caller gathers it, the rules do no I/O.

    ``None`` for ``services``, ``images_present``, ``listening`` and
    ``oom_kills`` means "not known" (offline, or the check could not run),
    which is different from an empty answer. ``api_available`` False says the
    API server could not be asked, so a missing ``pod`` means "unknown", not
    "deleted". ``agent_urls`` says whether the next steps may point at this
    agent's own HTTP API (not when run offline).
    """

    pod: ApiPod | None = None
    view: PodView | None = None
    events: tuple[ApiEvent, ...] = ()
    logs: Mapping[str, ContainerLogs] = field(default_factory=dict, hash=False)
    services: frozenset[str] | None = None
    images_present: Mapping[str, bool] | None = field(default=None, hash=False)
    listening: Mapping[int, bool] | None = field(default=None, hash=False)
    oom_kills: Mapping[str, int] | None = field(default=None, hash=False)
    node_name: str = ""
    now: datetime
    api_available: bool = True
    agent_urls: bool = True


@dataclass(frozen=True, slots=True)
class Thresholds:
    """How long a state may last before it is worth a finding, and how much to show."""

    # An init container that only waits (for a Service, a file) is normal for
    # a few seconds; a minute is long, ten are a stuck rollout.
    init_waiting_warning: timedelta = timedelta(seconds=60)
    init_waiting_error: timedelta = timedelta(minutes=10)
    # Creating covers volume mounts, the sandbox (CNI) and image pulls; large
    # images legitimately take a minute or two.
    creating_warning: timedelta = timedelta(minutes=2)
    creating_error: timedelta = timedelta(minutes=10)
    # Three failed readiness probes at the default 10 s period take 30 s.
    not_ready_warning: timedelta = timedelta(seconds=60)
    # A server needs a moment after its container starts before it listens.
    port_grace: timedelta = timedelta(seconds=30)
    # Past the deletion deadline (deletionTimestamp already includes the grace period).
    terminating_warning: timedelta = timedelta(seconds=30)
    terminating_error: timedelta = timedelta(minutes=10)
    # Kubelet forgets a container's backoff after 10 minutes without an exit,
    # so an exit older than that no longer makes a loop.
    recent_exit: timedelta = timedelta(minutes=10)
    unschedulable_error: timedelta = timedelta(minutes=5)
    log_lines: int = 5
    message_lines: int = 10


DEFAULT_THRESHOLDS = Thresholds()
