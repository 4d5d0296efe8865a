"""Kill-and-watch: a guarded kill of one container's process (or a pod's pause process),
watched phase by phase until the kubelet has healed it.

Off unless the agent runs with kills enabled; every target passes the guards
in ``_guards`` (allowlist or opt-in label, never the agent itself, never
system or static pods unless allowed, running target, restart policy, one run
per pod, a rate limit). The kill goes through a pidfd after checking the
process's start time and cgroup, so a recycled PID is never signalled. Every
kill and refusal is audited.

A services package: it may import the other services, the adapters, the domain, the errors
and the settings, never the HTTP layer.
"""

from agent.services.heal._audit import AuditLog, audit_caller
from agent.services.heal._guards import (
    AgentIdentity,
    KillRequest,
    expected_restart_delay,
    parse_signal,
    plan_kill,
)
from agent.services.heal._manager import HealManager
from agent.services.heal._run import (
    CONTAINER_PHASES,
    SANDBOX_PHASES,
    HealRun,
    Phase,
    Plan,
    RunState,
    Target,
)

__all__ = [
    "CONTAINER_PHASES",
    "SANDBOX_PHASES",
    "AgentIdentity",
    "AuditLog",
    "HealManager",
    "HealRun",
    "KillRequest",
    "Phase",
    "Plan",
    "RunState",
    "Target",
    "audit_caller",
    "expected_restart_delay",
    "parse_signal",
    "plan_kill",
]
