"""Server-side tables of the lab API server: what ``kubectl get`` prints.

kubectl asks for ``Accept: application/json;as=Table;g=meta.k8s.io;v=v1``
and prints the rows the server computes; a server that cannot answer so gets
only NAME and AGE. The columns and cell rules here follow the real server's
printers (``pkg/printers/internalversion``) for the kinds the lab serves:
pods (READY, STATUS, RESTARTS with "(5m ago)", AGE, and the wide columns IP,
NODE, NOMINATED NODE, READINESS GATES), nodes, events and namespaces. Every
cell is computed, wide ones included, as the real server does; kubectl hides
the columns of priority 1 unless asked for ``-o wide``.

This is written independently of the agent's own copy of kubectl's status
rules, so the two can be compared and a mistake in one shows against the
other, and both against a real API server.

Owns the Table bodies. Imports ``lab.apitime`` only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from lab.apitime import parse_rfc3339

JSON = dict[str, Any]

_NAME_DOC: Final = "Name must be unique within a namespace."
_AGE_DOC: Final = (
    "CreationTimestamp is a timestamp representing the server time when this object was created."
)


def _column(
    name: str, description: str, *, priority: int = 0, fmt: str = "", kind: str = "string"
) -> JSON:
    return {
        "name": name,
        "type": kind,
        "format": fmt,
        "description": description,
        "priority": priority,
    }


POD_COLUMNS: Final = (
    _column("Name", _NAME_DOC, fmt="name"),
    _column("Ready", "The aggregate readiness state of this pod for accepting traffic."),
    _column("Status", "The aggregate status of the containers in this pod."),
    _column(
        "Restarts",
        "The number of times the containers in this pod have been restarted and when the last "
        "container in this pod has restarted.",
    ),
    _column("Age", _AGE_DOC),
    _column("IP", "podIP address allocated to the pod.", priority=1),
    _column("Node", "NodeName indicates in which node this pod is scheduled.", priority=1),
    _column(
        "Nominated Node", "nominatedNodeName is set when this pod preempts other pods.", priority=1
    ),
    _column("Readiness Gates", "If specified, all readiness gates will be evaluated.", priority=1),
)
NODE_COLUMNS: Final = (
    _column("Name", _NAME_DOC, fmt="name"),
    _column("Status", "The status of the node"),
    _column("Roles", "The roles of the node"),
    _column("Age", _AGE_DOC),
    _column("Version", "Kubelet Version reported by the node."),
    _column("Internal-IP", "List of addresses reachable to the node.", priority=1),
    _column("External-IP", "List of addresses reachable to the node.", priority=1),
    _column("OS-Image", "OS Image reported by the node.", priority=1),
    _column("Kernel-Version", "Kernel Version reported by the node.", priority=1),
    _column("Container-Runtime", "ContainerRuntime Version reported by the node.", priority=1),
)
EVENT_COLUMNS: Final = (
    _column(
        "Last Seen", "The time at which the most recent occurrence of this event was recorded."
    ),
    _column("Type", "Type of this event (Normal, Warning)."),
    _column("Reason", "This should be a short, machine understandable string."),
    _column("Object", "The object that this event is about."),
    _column("Subobject", "The field of the object this event is about.", priority=1),
    _column("Source", "The component reporting this event.", priority=1),
    _column("Message", "A human-readable description of the status of this operation."),
    _column("First Seen", "The time at which the event was first recorded.", priority=1),
    _column("Count", "The number of times this event has occurred.", priority=1),
    _column("Name", _NAME_DOC, priority=1, fmt="name"),
)
NAMESPACE_COLUMNS: Final = (
    _column("Name", _NAME_DOC, fmt="name"),
    _column("Status", "The status of the namespace"),
    _column("Age", _AGE_DOC),
)
GENERIC_COLUMNS: Final = (_column("Name", _NAME_DOC, fmt="name"), _column("Age", _AGE_DOC))

_POD_DONE: Final = {
    "Succeeded": {
        "type": "Completed",
        "status": "True",
        "reason": "Succeeded",
        "message": "The pod has completed successfully.",
    },
    "Failed": {
        "type": "Completed",
        "status": "True",
        "reason": "Failed",
        "message": "The pod failed.",
    },
}


def wants_table(accept: str) -> bool:
    """True when the Accept header asks for a meta.k8s.io/v1 Table first."""
    for media in accept.split(","):
        params = {
            key.strip(): value.strip()
            for key, _, value in (p.partition("=") for p in media.split(";")[1:])
        }
        if params.get("as") == "Table":
            return params.get("g") == "meta.k8s.io" and params.get("v") == "v1"
        if media.split(";")[0].strip() in ("application/json", "*/*"):
            return False
    return False


def human_duration(seconds: float) -> str:
    """``duration.HumanDuration`` of the real printers: "45s", "2m30s", "5h3m", "3d4h"."""
    whole = int(seconds)
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        rest = whole % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = whole // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def _since(stamp: Any, now: float) -> str:
    if not stamp:
        return "<unknown>"
    try:
        return human_duration(now - parse_rfc3339(str(stamp)))
    except ValueError:
        return "<unknown>"


def _stamp(stamp: Any) -> float:
    try:
        return parse_rfc3339(str(stamp)) if stamp else 0.0
    except ValueError:
        return 0.0


def _dict(value: Any) -> JSON:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _terminated_reason(term: JSON, prefix: str) -> str:
    if term.get("reason"):
        return prefix + str(term["reason"])
    if term.get("signal"):
        return f"{prefix}Signal:{term['signal']}"
    return f"{prefix}ExitCode:{term.get('exitCode', 0)}"


def pod_cells(pod: JSON, now: float) -> list[Any]:
    """The cells of one pod's row, wide ones included."""
    meta, spec, status = (
        _dict(pod.get("metadata")),
        _dict(pod.get("spec")),
        _dict(pod.get("status")),
    )
    phase = str(status.get("phase") or "")
    reason = str(status.get("reason") or phase)
    conditions = [_dict(c) for c in _list(status.get("conditions"))]
    if any(
        c.get("type") == "PodScheduled" and c.get("reason") == "SchedulingGated" for c in conditions
    ):
        reason = "SchedulingGated"
    init_specs = {str(_dict(c).get("name")): _dict(c) for c in _list(spec.get("initContainers"))}

    def sidecar(name: str) -> bool:
        return init_specs.get(name, {}).get("restartPolicy") == "Always"

    total = len(_list(spec.get("containers"))) + sum(1 for n in init_specs if sidecar(n))
    ready = restarts = sidecar_restarts = 0
    last_restart = sidecar_last_restart = 0.0
    initializing = False
    for index, raw in enumerate(_list(status.get("initContainerStatuses"))):
        cs = _dict(raw)
        name = str(cs.get("name"))
        count = int(cs.get("restartCount") or 0)
        restarts += count
        finished = _stamp(_dict(_dict(cs.get("lastState")).get("terminated")).get("finishedAt"))
        last_restart = max(last_restart, finished)
        if sidecar(name):
            sidecar_restarts += count
            sidecar_last_restart = max(sidecar_last_restart, finished)
        state = _dict(cs.get("state"))
        term, waiting = state.get("terminated"), state.get("waiting")
        if isinstance(term, dict) and term.get("exitCode", 0) == 0:
            continue
        if sidecar(name) and cs.get("started") is True:
            if cs.get("ready"):
                ready += 1
            continue
        if isinstance(term, dict):
            reason = _terminated_reason(term, "Init:")
        elif (
            isinstance(waiting, dict)
            and waiting.get("reason")
            and waiting.get("reason") != "PodInitializing"
        ):
            reason = f"Init:{waiting['reason']}"
        else:
            reason = f"Init:{index}/{len(init_specs)}"
        initializing = True
        break
    initialized = any(
        c.get("type") == "Initialized" and c.get("status") == "True" for c in conditions
    )
    if not initializing or initialized:
        restarts, last_restart = sidecar_restarts, sidecar_last_restart
        running = False
        for raw in reversed(_list(status.get("containerStatuses"))):
            cs = _dict(raw)
            restarts += int(cs.get("restartCount") or 0)
            finished = _stamp(_dict(_dict(cs.get("lastState")).get("terminated")).get("finishedAt"))
            last_restart = max(last_restart, finished)
            state = _dict(cs.get("state"))
            term, waiting = state.get("terminated"), state.get("waiting")
            if isinstance(waiting, dict) and waiting.get("reason"):
                reason = str(waiting["reason"])
            elif isinstance(term, dict):
                reason = _terminated_reason(term, "")
            elif cs.get("ready") and isinstance(state.get("running"), dict):
                running = True
                ready += 1
        if reason == "Completed" and running:
            pod_ready = any(
                c.get("type") == "Ready" and c.get("status") == "True" for c in conditions
            )
            reason = "Running" if pod_ready else "NotReady"
    if meta.get("deletionTimestamp"):
        if status.get("reason") == "NodeLost":
            reason = "Unknown"
        elif phase not in ("Succeeded", "Failed"):
            reason = "Terminating"
    restarts_cell = str(restarts)
    if restarts and last_restart:
        restarts_cell = f"{restarts} ({human_duration(now - last_restart)} ago)"
    ips = [_dict(i).get("ip") for i in _list(status.get("podIPs"))]
    gates = [str(_dict(g).get("conditionType")) for g in _list(spec.get("readinessGates"))]
    gates_cell = "<none>"
    if gates:
        true = {str(c.get("type")) for c in conditions if c.get("status") == "True"}
        gates_cell = f"{sum(1 for g in gates if g in true)}/{len(gates)}"
    return [
        meta.get("name", ""),
        f"{ready}/{total}",
        reason,
        restarts_cell,
        _since(meta.get("creationTimestamp"), now),
        (ips[0] if ips and ips[0] else None) or "<none>",
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        gates_cell,
    ]


def node_cells(node: JSON, now: float) -> list[Any]:
    """The cells of one node's row, wide ones included."""
    meta, spec, status = (_dict(node.get(k)) for k in ("metadata", "spec", "status"))
    states = []
    for cond in map(_dict, _list(status.get("conditions"))):
        if cond.get("type") == "Ready":
            states = ["Ready" if cond.get("status") == "True" else "NotReady"]
    states = states or ["Unknown"]
    if spec.get("unschedulable"):
        states.append("SchedulingDisabled")
    roles = set()
    for key, value in _dict(meta.get("labels")).items():
        if key.startswith("node-role.kubernetes.io/") and key.removeprefix(
            "node-role.kubernetes.io/"
        ):
            roles.add(key.removeprefix("node-role.kubernetes.io/"))
        elif key == "kubernetes.io/role" and value:
            roles.add(str(value))
    info = _dict(status.get("nodeInfo"))

    def address(kind: str) -> str:
        for entry in map(_dict, _list(status.get("addresses"))):
            if entry.get("type") == kind:
                return str(entry.get("address"))
        return "<none>"

    return [
        meta.get("name", ""),
        ",".join(states),
        ",".join(sorted(roles)) or "<none>",
        _since(meta.get("creationTimestamp"), now),
        info.get("kubeletVersion", ""),
        address("InternalIP"),
        address("ExternalIP"),
        info.get("osImage") or "<unknown>",
        info.get("kernelVersion") or "<unknown>",
        info.get("containerRuntimeVersion") or "<unknown>",
    ]


def event_cells(event: JSON, now: float) -> list[Any]:
    """The cells of one event's row, wide ones included."""
    meta, involved = _dict(event.get("metadata")), _dict(event.get("involvedObject"))
    first = _since(event.get("firstTimestamp"), now)
    if not event.get("firstTimestamp"):
        first = _since(event.get("eventTime"), now)
    last = _since(event.get("lastTimestamp"), now) if event.get("lastTimestamp") else first
    count = int(event.get("count") or 0)
    series = event.get("series")
    if isinstance(series, dict):
        last = _since(series.get("lastObservedTime"), now)
        count = int(series.get("count") or 0)
    elif count == 0:
        count = 1
    kind = str(involved.get("kind") or "").lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    source = _dict(event.get("source"))
    component = str(source.get("component") or event.get("reportingComponent") or "")
    host = str(source.get("host") or event.get("reportingInstance") or "")
    source_cell = f"{component}, {host}" if host else component
    return [
        last,
        event.get("type", ""),
        event.get("reason", ""),
        target,
        involved.get("fieldPath", ""),
        source_cell,
        str(event.get("message") or "").strip(),
        first,
        count,
        meta.get("name", ""),
    ]


def _namespace_cells(ns: JSON, now: float) -> list[Any]:
    meta, status = _dict(ns.get("metadata")), _dict(ns.get("status"))
    phase = status.get("phase") or ""
    return [meta.get("name", ""), phase, _since(meta.get("creationTimestamp"), now)]


def _generic_cells(obj: JSON, now: float) -> list[Any]:
    meta = _dict(obj.get("metadata"))
    return [meta.get("name", ""), _since(meta.get("creationTimestamp"), now)]


_PRINTERS: Final[Mapping[str, tuple[Sequence[JSON], Callable[[JSON, float], list[Any]]]]] = {
    "pods": (POD_COLUMNS, pod_cells),
    "nodes": (NODE_COLUMNS, node_cells),
    "events": (EVENT_COLUMNS, event_cells),
    "namespaces": (NAMESPACE_COLUMNS, _namespace_cells),
}


def _row_object(obj: JSON, include: str) -> JSON | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata") or {},
    }


def table(
    resource: str,
    items: Sequence[JSON],
    *,
    resource_version: str = "",
    include_object: str = "Metadata",
    headers: bool = True,
    list_meta: JSON | None = None,
    now: float | None = None,
) -> JSON:
    """A ``meta.k8s.io/v1`` Table of ``items``; ``headers`` False leaves the columns out."""
    columns, cells = _PRINTERS.get(resource, (GENERIC_COLUMNS, _generic_cells))
    at = time.time() if now is None else now
    rows = []
    for obj in items:
        row: JSON = {"cells": cells(obj, at)}
        phase = _dict(obj.get("status")).get("phase") if resource == "pods" else None
        if phase in _POD_DONE:
            row["conditions"] = [_POD_DONE[str(phase)]]
        embedded = _row_object(obj, include_object)
        if embedded is not None:
            row["object"] = embedded
        rows.append(row)
    meta: JSON = dict(list_meta or {})
    if resource_version:
        meta["resourceVersion"] = resource_version
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": list(columns) if headers else [],
        "rows": rows,
    }
