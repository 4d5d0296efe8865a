"""One pod's offline answer: kubectl's columns and the findings, most severe first.

The wiring layer: imports the rules and the domain only.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from agent.diagnose._engine import diagnose
from agent.diagnose._types import ContainerLogs, DiagnosisInput, Thresholds
from agent.domain.kubemodel import ApiEvent, ApiPod
from agent.domain.podstatus import status_strings
from agent.domain.severity import SEVERITY_RANK

__all__ = ["pod_report", "severity_order"]

# After every real rank: pods without findings come last.
_NO_FINDING = len(SEVERITY_RANK)


def pod_report(
    pod: ApiPod,
    events: tuple[ApiEvent, ...],
    now: datetime,
    th: Thresholds,
    logs: Mapping[str, ContainerLogs] | None = None,
) -> dict[str, Any]:
    """``{namespace, name, status, ready, restarts, findings}`` for ``pod`` at ``now``."""
    inp = DiagnosisInput(
        pod=pod,
        events=events,
        logs=logs or {},
        node_name=pod.node_name or "",
        now=now,
        api_available=True,
        agent_urls=False,
    )
    strings = status_strings(pod, now)
    return {
        "namespace": pod.namespace,
        "name": pod.name,
        "status": strings.status,
        "ready": strings.ready,
        "restarts": strings.restarts,
        "findings": [f.to_dict() for f in diagnose(inp, thresholds=th)],
    }


def severity_order(report: Mapping[str, Any]) -> tuple[int, str, str]:
    """Sort key: the pod's most severe finding first, then namespace and name."""
    findings = report.get("findings") or []
    worst = min((SEVERITY_RANK.get(f["severity"], _NO_FINDING) for f in findings), default=None)
    return (
        _NO_FINDING if worst is None else worst,
        str(report.get("namespace", "")),
        str(report.get("name", "")),
    )
