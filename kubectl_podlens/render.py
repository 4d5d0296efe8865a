"""What a command prints: kubectl-like tables, or JSON and YAML of the merged answer.

Tables are laid out as kubectl lays them out (each column as wide as its
widest cell, three spaces apart, headers in capitals). Nodes that did not
answer are printed after the answer, on stderr for tables and inside the
document for JSON and YAML, so a script sees them too. Imports ``model``,
``agent.api.schemas`` (the agent's wire models), PyYAML and the standard library.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import yaml

from agent.api.schemas import FindingItem, PodViewItem
from kubectl_podlens.model import Unreached

# The agent's severities, most severe first.
SEVERITY_ORDER = ("critical", "error", "warning", "info")


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Columns padded to their widest cell, three spaces apart, as kubectl prints them."""
    lines = [list(header), *[list(r) for r in rows]]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for line in lines:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(line)]
        out.append("   ".join(cells).rstrip())
    return "\n".join(out)


def document(data: Any, output: str) -> str:
    """``data`` as JSON or YAML."""
    if output == "json":
        return json.dumps(data, indent=2)
    return str(yaml.safe_dump(data, sort_keys=False))


def human_duration(seconds: float) -> str:
    """kubectl's AGE: "45s", "3m20s", "5h", "2d3h", as ``duration.HumanDuration`` writes it."""
    if seconds < -1:
        return "<invalid>"
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m" + (f"{s % 60}s" if s % 60 else "")
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h" + (f"{minutes % 60}m" if minutes % 60 else "")
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        return f"{days}d" + (f"{hours % 24}h" if hours % 24 else "")
    if days < 365 * 2:
        return f"{days}d"
    years = days // 365
    if days < 365 * 8:
        return f"{years}y" + (f"{days % 365}d" if days % 365 else "")
    return f"{years}y"


def _age(at: datetime | None, now: datetime) -> str:
    return human_duration((now - at).total_seconds()) if at is not None else "<unknown>"


def pods_table(pods: Sequence[tuple[str, PodViewItem]], *, all_namespaces: bool, wide: bool) -> str:
    """``kubectl podlens pods``: kubectl's columns, the node, pause PID and problems."""
    now = datetime.now(UTC)
    header = ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "NODE", "PAUSE PID", "PROBLEMS"]
    if all_namespaces:
        header.insert(0, "NAMESPACE")
    if wide:
        header += ["IP", "SANDBOX"]
    rows = []
    for node, pod in pods:
        sandbox = pod.sandboxes[0] if pod.sandboxes else None
        pause = str(sandbox.pause_pid) if sandbox and sandbox.pause_pid else "<none>"
        problems = ",".join(sorted({m.kind for m in pod.mismatches})) or "<none>"
        row = [pod.name, pod.ready, pod.status, pod.restarts, _age(pod.created_at, now), node]
        row += [pause, problems]
        if all_namespaces:
            row.insert(0, pod.namespace)
        if wide:
            row += [
                (sandbox.ip if sandbox else None) or "<none>",
                sandbox.id[:13] if sandbox else "<none>",
            ]
        rows.append(row)
    return table(header, rows)


def severity_rank(severity: str) -> int:
    """Position in ``SEVERITY_ORDER``; unknown ones last."""
    return SEVERITY_ORDER.index(severity) if severity in SEVERITY_ORDER else len(SEVERITY_ORDER)


def findings_table(findings: Sequence[tuple[str, FindingItem]], *, wide: bool) -> str:
    """``kubectl podlens diagnose``: every finding with its node, most severe first."""
    header = ["SEVERITY", "NODE", "NAMESPACE", "POD", "CONTAINER", "RULE", "SUMMARY"]
    if wide:
        header += ["CAUSE"]
    rows = []
    for node, f in findings:
        row = [f.severity, node, f.namespace, f.pod, f.container or "-", f.rule, f.summary]
        if wide:
            row.append(f.cause)
        rows.append(row)
    return table(header, rows)


def unreached_note(unreached: Sequence[Unreached], asked: int) -> str:
    """The partial answer's note: which nodes did not answer, and why."""
    head = f"partial answer: {len(unreached)} of {asked} nodes did not answer"
    body = table(
        ["NODE", "REASON", "DETAIL"], [(u.node, str(u.reason), u.detail) for u in unreached]
    )
    return f"{head}\n{body}"


def unreached_items(unreached: Sequence[Unreached]) -> list[dict[str, str]]:
    """The unreached nodes for JSON and YAML."""
    return [{"node": u.node, "reason": str(u.reason), "detail": u.detail} for u in unreached]


def agents_table(rows: Sequence[dict[str, Any]]) -> str:
    """``kubectl podlens agents``: each node's agent, version, and whether it answered."""

    def cell(value: Any, empty: str = "<none>") -> str:
        return empty if value is None or value == "" else str(value)

    return table(
        ["NODE", "AGENT", "READY", "VERSION", "REACHABLE", "WHY NOT"],
        [
            [
                cell(r["node"]),
                cell(r["agent"]),
                "yes" if r["ready"] else "no",
                cell(r["version"]),
                "yes" if r["reachable"] else "no",
                f"{r['reason']}: {r['detail']}" if r["reason"] else "",
            ]
            for r in rows
        ],
    )
