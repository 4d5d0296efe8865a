"""Events as people paste them: ``kubectl get events`` tables, ``-o yaml``, ``-o json``.

Tables are read by their header, so every layout kubectl has printed works:

* today: ``LAST SEEN  TYPE  REASON  OBJECT  MESSAGE`` (``NAMESPACE`` first
  with ``-A``; ``-o wide`` adds ``SUBOBJECT``, ``SOURCE``, ``FIRST SEEN``,
  ``COUNT``, ``NAME``), OBJECT as ``pod/web``;
* older: ``LAST SEEN  FIRST SEEN  COUNT  NAME  KIND  SUBOBJECT  TYPE  REASON
  SOURCE  MESSAGE`` (``LASTSEEN``/``FIRSTSEEN`` in the oldest), NAME being
  the event's own name, ``<object>.<hex>``.

Ages are relative to when the command ran (``--now``). A table row rarely
says which container it is about; ``infer_field_path`` reads that from the
message once the pod's containers are known.

Part of the wiring layer: imports its siblings, the domain and the errors only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from agent.cli.pastes._describe import looks_like_describe, parse_describe
from agent.cli.pastes._load import load_with_notes
from agent.cli.pastes._text import (
    columns_of,
    parse_age,
    parse_age_cell,
    parse_source,
    shown,
    split_row,
)
from agent.cli.pastes._types import EventDoc, EventsInput
from agent.domain.kubemodel import ApiPod
from agent.domain.times import iso
from agent.errors import InvalidInput

__all__ = [
    "core_event",
    "events_from_documents",
    "infer_field_path",
    "looks_like_events_table",
    "read_events",
]

_EVENT_TYPES = frozenset({"Normal", "Warning"})
_TABLE_HEADER = re.compile(r"^\s*(?:NAMESPACE\s+)?(?:LAST ?SEEN|TYPE)\b.*\bREASON\b.*\bMESSAGE\b")
# "Back-off restarting failed container api in pod ...", "Created container: api",
# "Container api failed liveness probe", "Killing container with id docker://api:..."
_CONTAINER_WORD = re.compile(
    r"\bcontainers?(?::|\s+with id\s+\w+://)?\s+\"?(?P<name>[a-z0-9][-a-z0-9.]*)", re.I
)
_IMAGE = re.compile(r'image "(?P<image>[^"]+)"')
# Reasons kubelet gives events about one container of the pod.
_CONTAINER_REASONS = frozenset(
    {
        "Pulling",
        "Pulled",
        "Failed",
        "BackOff",
        "Created",
        "Started",
        "Killing",
        "Unhealthy",
        "ProbeWarning",
        "ErrImageNeverPull",
        "InspectFailed",
        "FailedPostStartHook",
        "FailedPreStopHook",
    }
)


# Headers are short; a pattern never looks further into a pasted line than this.
_HEADER_CHARS = 512
_MESSAGE_CHARS = 4096


def _is_header(line: str) -> bool:
    return bool(_TABLE_HEADER.match(line[:_HEADER_CHARS]))


def looks_like_events_table(text: str) -> bool:
    """Whether the first line of ``text`` is the header of ``kubectl get events``."""
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    return _is_header(first)


def core_event(d: Mapping[str, Any]) -> Mapping[str, Any]:
    """An events.k8s.io/v1 Event in core/v1 shape (``regarding`` -> ``involvedObject``...)."""
    if not str(d.get("apiVersion", "")).startswith("events.k8s.io/"):
        return d
    series = d.get("series") if isinstance(d.get("series"), Mapping) else {}
    source = d.get("deprecatedSource") if isinstance(d.get("deprecatedSource"), Mapping) else {}
    return {
        "kind": "Event",
        "metadata": d.get("metadata") or {},
        "involvedObject": d.get("regarding") or {},
        "reason": d.get("reason"),
        "message": d.get("note"),
        "type": d.get("type"),
        "count": d.get("deprecatedCount"),
        "firstTimestamp": d.get("deprecatedFirstTimestamp"),
        "lastTimestamp": d.get("deprecatedLastTimestamp"),
        "eventTime": d.get("eventTime"),
        "series": series,
        "source": source,
        "reportingComponent": d.get("reportingController"),
        "reportingInstance": d.get("reportingInstance"),
    }


def events_from_documents(docs: Sequence[Any]) -> list[EventDoc]:
    """The Events in loaded documents (Lists, EventLists, single Events, sequences)."""
    out: list[EventDoc] = []
    for n, doc in enumerate(docs):
        prefix = f"document {n + 1}: " if len(docs) > 1 else ""
        listed = True
        if isinstance(doc, list):
            items: Any = doc
        elif not isinstance(doc, Mapping):
            raise InvalidInput(f"{prefix}expected an Event or a List, got {type(doc).__name__}")
        elif isinstance(doc.get("items"), list) or str(doc.get("kind", "")).endswith("List"):
            items = doc.get("items") or []
            if not isinstance(items, list):
                raise InvalidInput(f"{prefix}items is not a list")
        else:
            items, listed = [doc], False
        for i, item in enumerate(items):
            where = f"{prefix}items[{i}]" if listed else (prefix.rstrip(": ") or "it")
            if not isinstance(item, Mapping):
                raise InvalidInput(f"{where} is not an object")
            kind = item.get("kind")
            if kind is not None and kind != "Event":
                raise InvalidInput(f"{where} is a {shown(kind)}, not an Event")
            out.append(EventDoc(core_event(item), where=where if listed or prefix else ""))
    return out


def _involved(cell: dict[str, str]) -> dict[str, Any]:
    namespace = cell.get("namespace", "")
    if obj := cell.get("object"):
        kind, sep, name = obj.partition("/")
        if not sep:
            kind, name = obj, ""
        kind = "Pod" if kind.lower() == "pod" else kind[:1].upper() + kind[1:]
    else:
        kind = cell.get("kind", "")
        # The old NAME column is the event's own name: "<object>.<16 hex digits>".
        name = re.sub(r"\.[0-9a-f]{8,}$", "", cell.get("name", ""))
    out: dict[str, Any] = {"kind": kind, "name": name}
    if namespace:
        out["namespace"] = namespace
    if path := cell.get("subobject", "").strip():
        out["fieldPath"] = path
    return out


def _valid_row(cell: dict[str, str]) -> bool:
    if "type" in cell and cell["type"] not in _EVENT_TYPES:
        return False
    last = cell.get("lastseen")
    return last is None or parse_age_cell(last) is not None


def parse_events_table(text: str, now: datetime) -> list[EventDoc]:
    """Events rebuilt from a ``kubectl get events`` table (any layout), times as of ``now``."""
    lines = [ln.rstrip().expandtabs(8) for ln in text.splitlines() if ln.strip()]
    if not lines:
        return []
    columns = columns_of(lines[0])
    names = [c.name.lower().replace(" ", "") for c in columns]
    rows: list[dict[str, str]] = []
    for line in lines[1:]:
        if _is_header(line):
            continue  # a second table pasted after the first
        cells = split_row(line, columns)
        cell = dict(zip(names, cells, strict=True)) if cells is not None else None
        if cell is not None and _valid_row(cell):
            rows.append(cell)
        elif rows:
            rows[-1]["message"] = f"{rows[-1].get('message', '')} {line.strip()}".strip()
    out: list[EventDoc] = []
    for n, cell in enumerate(rows):
        age = parse_age_cell(cell.get("lastseen", ""))
        last = age.last if age is not None else None
        first = parse_age(cell.get("firstseen", "")) if "firstseen" in cell else None
        if first is None and age is not None:
            first = age.first if age.first is not None else last
        count_text = cell.get("count", "")
        count = int(count_text) if count_text.isdigit() else None
        if count is None and age is not None:
            count = age.count
        involved = _involved(cell)
        name = cell.get("name") if "object" in cell and cell.get("name") else None
        doc: dict[str, Any] = {
            "kind": "Event",
            "metadata": {
                "name": name or f"{involved['name'] or 'event'}.table-{n}",
                "namespace": involved.get("namespace", ""),
            },
            "involvedObject": involved,
            "reason": cell.get("reason") or None,
            "message": cell.get("message") or None,
            "type": cell.get("type") or None,
            "count": count or 1,
            "firstTimestamp": iso(now - first) if first is not None else None,
            "lastTimestamp": iso(now - last) if last is not None else None,
            "source": parse_source(cell.get("source", "")),
        }
        out.append(EventDoc(doc, textual=True, where=f"row {n + 1}"))
    return out


def read_events(text: str, now: datetime) -> EventsInput:
    """The events in ``--events`` input; ``InvalidInput`` naming what was recognised."""
    text = text.removeprefix("\ufeff")
    if looks_like_events_table(text):
        events = parse_events_table(text, now)
        first = next(ln for ln in text.splitlines() if ln.strip())
        names = {c.name.replace(" ", "") for c in columns_of(first)}
        if "OBJECT" not in names:
            layout = "older layout, one row per event with KIND and NAME"
        elif "SUBOBJECT" in names:
            layout = "current layout, -o wide"
        else:
            layout = "current layout"
        if "NAMESPACE" in names:
            layout += ", all namespaces"
        return EventsInput(
            shape="events-table",
            recognised=f"a kubectl get events table ({layout}), {len(events)} rows",
            events=events,
            notes=["event times are rebuilt from the table's ages, as of --now"],
        )
    if looks_like_describe(text):
        # describe prints the pod's events last; they are taken from there.
        described = [e for pod in parse_describe(text, now) for e in pod.events]
        return EventsInput(
            shape="describe-events",
            recognised=f"the Events tables of kubectl describe text, {len(described)} rows",
            events=described,
            notes=["event times are rebuilt from the table's ages, as of --now"],
        )
    docs, notes = load_with_notes(text, "events input")
    try:
        events = events_from_documents(docs)
    except InvalidInput as exc:
        raise InvalidInput(f"events input: {exc.message}") from None
    return EventsInput(
        shape="events", recognised=f"{len(events)} Event objects", events=events, notes=notes
    )


def infer_field_path(event: Mapping[str, Any], pod: ApiPod) -> str | None:
    """Which container of ``pod`` a printed event is about, read from its message; None if unsure.

    The container is named in kubelet's messages ("container api"), or found
    by the image a pull message names when one container has it, or is the
    pod's only container for reasons that only ever concern a container.
    """
    message = str(event.get("message") or "")[:_MESSAGE_CHARS]
    groups = (
        ("spec.initContainers", pod.init_containers),
        ("spec.containers", pod.containers),
        ("spec.ephemeralContainers", pod.ephemeral_containers),
    )
    by_name = {spec.name: key for key, specs in groups for spec in specs}
    for m in _CONTAINER_WORD.finditer(message):
        if m.group("name") in by_name:
            name = m.group("name")
            return f"{by_name[name]}{{{name}}}"
    if im := _IMAGE.search(message):
        statuses = {
            s.name: s.image for s in (*pod.init_container_statuses, *pod.container_statuses)
        }
        holders = [
            (key, spec.name)
            for key, specs in groups
            for spec in specs
            if im.group("image") in (spec.image, statuses.get(spec.name))
        ]
        if len(holders) == 1:
            return f"{holders[0][0]}{{{holders[0][1]}}}"
        return None
    everyone = [(key, spec.name) for key, specs in groups for spec in specs]
    reason = event.get("reason")
    if reason not in _CONTAINER_REASONS:
        return None
    if len(everyone) == 1:
        return f"{everyone[0][0]}{{{everyone[0][1]}}}"
    # Several containers: the one whose state the event explains, when only one fits.
    fits = [(key, name) for key, name in everyone if _explains(reason, message, pod, name)]
    if len(fits) == 1:
        return f"{fits[0][0]}{{{fits[0][1]}}}"
    return None


_ERROR_WAITING = frozenset(
    {
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "PreStartHookError",
        "PostStartHookError",
    }
)


def _explains(reason: object, message: str, pod: ApiPod, name: str) -> bool:
    """Whether an event with no container named fits the state of container ``name``."""
    status = pod.status_for(name)
    if status is None:
        return False
    state = status.state
    if reason == "Failed" and message.startswith("Error: "):
        said = message.removeprefix("Error: ").strip()
        if said in _ERROR_WAITING:
            return state.reason == said
        return state.is_waiting and state.reason in _ERROR_WAITING
    if reason == "BackOff" and "restarting" in message:
        return state.is_waiting and state.reason == "CrashLoopBackOff"
    if reason in ("Unhealthy", "Killing"):
        return state.is_running and not status.ready
    return False
