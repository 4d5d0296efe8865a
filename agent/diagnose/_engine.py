"""The catalogue: every rule, run in a fixed order, findings sorted most severe first.

Part of the rules: imports the rule modules, the domain and the standard library only.
"""

from __future__ import annotations

from collections.abc import Callable

from agent.diagnose._common import (
    Ctx,
    make_ctx,
)
from agent.diagnose._config import config_error, start_error
from agent.diagnose._crash import container_failed, crashloop, oom_killed
from agent.diagnose._image import image_pull
from agent.diagnose._init import init_crashloop, init_failed, init_waiting
from agent.diagnose._pod import (
    container_status_unknown,
    evicted,
    not_ready,
    stuck_creating,
    terminating_stuck,
    unschedulable,
)
from agent.diagnose._runtime import (
    api_unavailable,
    mismatches,
    port_not_listening,
    volume_not_shared,
)
from agent.diagnose._types import (
    DEFAULT_THRESHOLDS,
    DiagnosisInput,
    Finding,
    Thresholds,
)
from agent.domain.severity import SEVERITY_RANK

Rule = Callable[[Ctx], list[Finding]]

# Pod-wide states first, then the init phase, then the containers, then the
# node's own view; within one severity this is the order findings keep.
RULES: tuple[tuple[str, Rule], ...] = (
    ("evicted", evicted),
    ("terminating-stuck", terminating_stuck),
    ("container-status-unknown", container_status_unknown),
    ("unschedulable", unschedulable),
    ("init-failed", init_failed),
    ("init-crashloop", init_crashloop),
    ("init-waiting", init_waiting),
    ("stuck-creating", stuck_creating),
    ("image-pull", image_pull),
    ("config-error", config_error),
    ("start-error", start_error),
    ("crashloop", crashloop),
    ("container-failed", container_failed),
    ("oom-killed", oom_killed),
    ("not-ready", not_ready),
    ("port-not-listening", port_not_listening),
    ("volume-not-shared", volume_not_shared),
    ("mismatch-*", mismatches),
    ("api-unavailable", api_unavailable),
)


def diagnose(inp: DiagnosisInput, *, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> list[Finding]:
    """Every finding for one pod, most severe first; equal severities keep the catalogue order."""
    ctx = make_ctx(inp, thresholds)
    if ctx is None:
        return []
    found: list[Finding] = []
    for _, rule in RULES:
        found.extend(rule(ctx))
    found.sort(key=lambda f: SEVERITY_RANK[f.severity])
    return found
