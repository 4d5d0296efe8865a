"""Plain-text renderings for people reading curl output in a terminal.

Part of the HTTP edge: imports the wire schemas and the standard library only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from agent.api.schemas import (
    ContainerDetail,
    ContainerItem,
    FindingItem,
    HealRunItem,
    HealRunSummary,
    NodeDiagnostics,
    NodeInfo,
    PodDiagnosis,
    PodViewItem,
    ProcessLookup,
    ProcessTreeItem,
    SandboxDetail,
    SandboxItem,
)

SHORT_ID = 13  # as crictl prints IDs


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Columns padded to their widest cell, as kubectl prints them; None is "-", a time an age."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], len(value))
    lines = [_line(headers, widths)]
    lines.extend(_line(row, widths) for row in cells)
    return "\n".join(lines) + "\n"


def _line(values: Sequence[str], widths: Sequence[int]) -> str:
    return "   ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return age(value)
    return str(value)


def age(at: datetime, now: datetime | None = None) -> str:
    """Compact age like kubectl's: 45s, 12m, 3h, 2d."""
    seconds = int(((now or datetime.now(UTC)) - at).total_seconds())
    if seconds < 0:
        return "0s"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * 2 or (unit == "m" and seconds >= size):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def sandboxes(items: Sequence[SandboxItem]) -> str:
    """The ``/v1/sandboxes`` table, like ``crictl pods`` plus pause PID, network and IP."""
    return table(
        ["POD ID", "POD", "NAMESPACE", "STATE", "ATTEMPT", "PAUSE PID", "NETWORK", "IP", "AGE"],
        (
            [
                s.id[:SHORT_ID],
                s.pod,
                s.namespace,
                s.state.upper(),
                s.attempt,
                s.pause_pid,
                s.network_mode,
                s.ip,
                s.created_at,
            ]
            for s in items
        ),
    )


def containers(items: Sequence[ContainerItem]) -> str:
    """The ``/v1/containers`` table, like ``crictl ps -a`` plus PID, exit code and reason."""
    return table(
        [
            "CONTAINER",
            "NAME",
            "STATE",
            "ATTEMPT",
            "PID",
            "EXIT",
            "REASON",
            "POD",
            "NAMESPACE",
            "CREATED",
        ],
        (
            [
                c.id[:SHORT_ID],
                c.name,
                c.state.upper(),
                c.attempt,
                c.pid,
                c.exit_code,
                c.reason,
                c.pod,
                c.namespace,
                c.created_at,
            ]
            for c in items
        ),
    )


def _fields(pairs: Sequence[tuple[str, object]]) -> str:
    width = max(len(k) for k, _ in pairs)
    return "".join(f"{k + ':':<{width + 1}} {_cell(v)}\n" for k, v in pairs)


def sandbox_detail(s: SandboxDetail) -> str:
    """One sandbox: its fields, its namespaces, then its containers' table."""
    out = _fields(
        [
            ("Sandbox", s.id),
            ("Pod", f"{s.namespace}/{s.pod} (uid {s.pod_uid})"),
            ("State", s.state.upper()),
            ("Attempt", s.attempt),
            ("Pause PID", s.pause_pid if s.pause_pid is not None else s.pause_pid_note),
            ("Network", f"{s.network_mode or '-'} {s.network_namespace or ''}".strip()),
            ("IP", s.ip),
            ("Created", s.created_at.isoformat() if s.created_at else None),
        ]
    )
    if s.namespaces:
        out += "\nNamespaces:\n" + "".join(
            f"  {n.type:<8} {n.path or '(own)'}\n" for n in s.namespaces
        )
    out += "\nContainers:\n" + (containers(s.containers) if s.containers else "  (none)\n")
    return out


def container_detail(c: ContainerDetail) -> str:
    """One container: its fields, its main process and the tree under it, its mounts."""
    out = _fields(
        [
            ("Container", c.id),
            ("Name", c.name),
            ("Pod", f"{c.namespace}/{c.pod} (uid {c.pod_uid})"),
            ("Sandbox", c.sandbox_id),
            ("State", c.state.upper()),
            ("Attempt", c.attempt),
            ("PID", c.pid),
            ("Exit code", c.exit_code),
            ("Reason", c.reason),
            ("Image", c.image),
            ("Started", c.started_at.isoformat() if c.started_at else None),
            ("Finished", c.finished_at.isoformat() if c.finished_at else None),
            ("Log", c.log_path),
        ]
    )
    if c.process is not None:
        p = c.process
        out += (
            f"\nProcess: {p.pid} {p.state} user={p.user or '-'} "
            f"rss={p.rss_bytes // 1024}KiB cmd={' '.join(p.cmdline) or p.name}\n"
        )
    if c.process_tree is not None and c.process_tree.children:
        out += "Process tree:\n" + _tree(c.process_tree, "  ")
    if c.mounts:
        out += "\nMounts:\n" + "".join(
            f"  {m.destination:<30} <- {m.source}{' (ro)' if m.readonly else ''}\n"
            for m in c.mounts
        )
    return out


def _tree(node: ProcessTreeItem, indent: str) -> str:
    out = f"{indent}{node.pid} {' '.join(node.cmdline) or node.name} [{node.state}]\n"
    for child in node.children:
        out += _tree(child, indent + "  ")
    return out


def process_lookup(p: ProcessLookup) -> str:
    """A host PID and the pod, container and sandbox it belongs to."""
    pairs: list[tuple[str, object]] = [
        ("PID", p.process.pid),
        ("Command", " ".join(p.process.cmdline) or p.process.name),
        ("State", p.process.state),
        ("Pod", f"{p.namespace}/{p.pod} (uid {p.pod_uid})"),
        (
            "Container",
            f"{p.container.name} {p.container.id[:SHORT_ID]}"
            if p.container
            else "(pause process of the sandbox)",
        ),
        ("Sandbox", p.sandbox.id[:SHORT_ID] if p.sandbox else None),
        ("Matched by", p.matched_by),
    ]
    return _fields(pairs)


def node(n: NodeInfo) -> str:
    """This node: the runtime and its connection, the API server, capabilities and counts."""
    r = n.runtime
    pairs: list[tuple[str, object]] = [
        ("Node", n.node_name),
        ("Runtime", f"{r.name or '?'} {r.version or ''}".strip()),
        ("CRI API", r.cri_api_version),
        ("Endpoint", r.endpoint),
        ("Connected", "yes" if r.connected else f"no ({r.reason}) since {r.since.isoformat()}"),
        ("API server", f"{n.api.detail}; {n.api.pods_on_node} pods bound here"),
        ("Changes via", _change_source(n)),
        ("Relist every", f"{n.capabilities.relist_interval_seconds:g}s"),
        (
            "Optional calls",
            ", ".join(f"{call}: {answer}" for call, answer in n.capabilities.optional_calls.items())
            or None,
        ),
        ("Pause processes", n.capabilities.pause_processes),
        ("Sandboxes", f"{n.counts.sandboxes} ({n.counts.sandboxes_ready} ready)"),
        (
            "Containers",
            f"{n.counts.containers} ({n.counts.containers_running} running, "
            f"{n.counts.containers_exited} exited)",
        ),
        ("Pods", n.counts.pods),
    ]
    return _fields(pairs)


def _change_source(n: NodeInfo) -> str:
    c = n.capabilities
    if c.change_source == "events":
        source = (
            f"events ({c.events_received} received, the stream broken {c.event_stream_breaks} "
            "times); relists as the safety net"
        )
    else:
        source = "relist" + (f" ({c.change_source_reason})" if c.change_source_reason else "")
    if c.pidfd_exit_notifications:
        return source + " + pidfd exit notifications"
    return source + f" (no pidfds: {c.pidfd_unavailable})"


def pods(items: Sequence[PodViewItem]) -> str:
    """The ``/v1/pods`` table: kubectl's columns, then pause PID, sandboxes and problems."""
    rows = []
    for p in items:
        current = p.sandboxes[0] if p.sandboxes else None
        rows.append(
            [
                p.namespace,
                p.name,
                p.ready,
                p.status,
                p.restarts,
                p.created_at,
                current.pause_pid if current else None,
                len(p.sandboxes),
                len(p.mismatches) or None,
            ]
        )
    return table(
        [
            "NAMESPACE",
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "PAUSE PID",
            "SANDBOXES",
            "PROBLEMS",
        ],
        rows,
    )


def pod_detail(p: PodViewItem) -> str:
    """One pod: sandboxes, containers, earlier attempts, shared volumes, events, mismatches."""
    out = _fields(
        [
            ("Pod", f"{p.namespace}/{p.name}"),
            ("UID", p.uid),
            ("Status", f"{p.status}  (READY {p.ready}, RESTARTS {p.restarts})"),
            ("Phase", p.phase),
            ("API", p.api if p.api_known else f"{p.api}; this pod is unknown to the API server"),
            ("Node", p.node_name),
        ]
    )
    out += "\nSandboxes:\n" + (sandboxes(p.sandboxes) if p.sandboxes else "  (none)\n")
    out += "\nContainers:\n"
    out += table(
        [
            "NAME",
            "ROLE",
            "STATE",
            "READY",
            "RESTARTS",
            "PID",
            "EXIT",
            "REASON",
            "CONTAINER",
            "SHARES WITH PAUSE",
        ],
        (
            [
                c.name,
                c.role or "runtime-only",
                c.state,
                {True: "yes", False: "no", None: None}[c.ready],
                c.restart_count,
                c.pid,
                c.exit_code,
                c.reason,
                c.id[:SHORT_ID] if c.id else None,
                ",".join(p.pod_level_sharing(c)) or None,
            ]
            for c in p.containers
        ),
    )
    if p.pause_shares_with_host:
        out += (
            "  (SHARES WITH PAUSE leaves out what the pause shares with the whole node: "
            f"{', '.join(p.pause_shares_with_host)})\n"
        )
    if p.namespace_sharing_unknown:
        out += f"  (SHARES WITH PAUSE not known: {p.namespace_sharing_unknown})\n"
    attempts = [(c.name, a) for c in p.containers for a in c.attempts]
    if attempts:
        out += "\nEarlier attempts the runtime still holds:\n" + table(
            ["NAME", "ATTEMPT", "STATE", "EXIT", "REASON", "CONTAINER", "FINISHED"],
            (
                [n, a.attempt, a.state, a.exit_code, a.reason, a.id[:SHORT_ID], a.finished_at]
                for n, a in attempts
            ),
        )
    shared = [v for v in p.volumes if len(v.mounted_by) > 1]
    if shared:
        out += "\nShared volumes:\n"
        for v in shared:
            users = ", ".join(f"{u.container}:{u.mount_path}" for u in v.mounted_by)
            same = {True: "same host path", False: "DIFFERENT host paths", None: "runtime unknown"}
            out += f"  {v.name} ({v.kind}): {users} [{same[v.shared_in_runtime]}]\n"
    if p.events:
        out += "\nEvents:\n" + table(
            ["LAST SEEN", "TYPE", "REASON", "MESSAGE"],
            ([e.last_seen, e.type, e.reason, e.message] for e in p.events[-15:]),
        )
    elif p.events_error:
        out += f"\nEvents: unavailable ({p.events_error})\n"
    if p.mismatches:
        out += "\nMismatches:\n" + "".join(
            f"  [{m.severity}] {m.kind}: {m.message}\n" for m in p.mismatches
        )
    return out


def runs(items: Sequence[HealRunSummary]) -> str:
    """The ``/v1/heal/runs`` table: each kill-and-watch run, its target and recovery time."""
    return table(
        ["RUN", "STATE", "NAMESPACE", "POD", "TARGET", "RECOVERED IN", "REQUESTED"],
        (
            [
                r.id,
                r.state,
                r.namespace,
                r.pod,
                r.target,
                f"{r.time_to_recover_seconds:.2f}s" if r.time_to_recover_seconds else None,
                r.requested_at,
            ]
            for r in items
        ),
    )


def run_detail(r: HealRunItem) -> str:
    """One kill-and-watch run: target, signal, who asked, the timeline and the verdict."""
    t = r.target
    what = f"container {t.container}" if t.container else "pause process (sandbox)"
    out = _fields(
        [
            ("Run", r.id),
            ("Target", f"{what} of {t.namespace}/{t.pod}, PID {t.pid}, attempt {t.attempt}"),
            ("Signal", r.plan.signal),
            ("Requested by", r.requested_by),
            ("State", r.state),
        ]
    )
    out += "\nTimeline:\n" + table(
        ["+SECONDS", "PHASE", "DETAIL"],
        (
            [
                f"{p.since_signal_seconds:.3f}" if p.since_signal_seconds is not None else None,
                p.name,
                " ".join(f"{k}={v}" for k, v in p.detail.items()) or None,
            ]
            for p in r.phases
        ),
    )
    out += f"\nVerdict: {r.verdict or '(watching)'}\n"
    return out


def _finding(f: FindingItem) -> str:
    where = f"{f.namespace}/{f.pod}" + (f" [{f.container}]" if f.container else "")
    out = f"{f.severity.upper():<8} {f.rule:<22} {where}\n  {f.summary}\n"
    if f.cause:
        out += f"  Cause: {f.cause}\n"
    if f.evidence:
        out += "  Evidence:\n"
        for e in f.evidence:
            value = e.value.replace("\n", "\n      ")
            out += f"    - ({e.kind}) {e.label}: {value}\n"
    if f.next_steps:
        out += "  Next:\n" + "".join(f"    $ {step}\n" for step in f.next_steps)
    return out


def diagnosis(d: PodDiagnosis) -> str:
    """One pod's kubectl columns, then each finding with its cause, evidence and next steps."""
    head = (
        f"Pod {d.namespace}/{d.name}: {d.status}  READY {d.ready}  RESTARTS {d.restarts}"
        f"  (api: {d.api})\n"
    )
    if not d.findings:
        return head + "\nNo problems found.\n"
    return head + "\n" + "\n".join(_finding(f) for f in d.findings)


def diagnostics(d: NodeDiagnostics) -> str:
    """The node-wide findings under a count of the pods checked and those with findings."""
    head = (
        f"Node {d.node_name}: {d.pods_checked} pods checked, {d.pods_with_findings} with findings\n"
    )
    if not d.items:
        return head + "\nNo problems found.\n"
    return head + "\n" + "\n".join(_finding(f) for f in d.items)
