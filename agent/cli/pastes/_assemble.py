"""From what was read to what the rules take: ``ApiPod`` and ``ApiEvent``, gaps recorded.

A fragment's pod is converted like a whole one, then ``fill_gaps`` takes
its containers from the statuses and infers what the fragment does not say.
A pod whose name the fragment lacks takes it from the events when they name
exactly one pod; printed events get their container from their message.

Part of the wiring layer: imports its siblings, the domain's API types, the errors and
``agent.kube.convert``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agent.cli.pastes._events import infer_field_path
from agent.cli.pastes._shapes import PLACEHOLDER_NAMESPACE, PLACEHOLDER_POD
from agent.cli.pastes._types import EventDoc, PodDoc
from agent.domain.kubemodel import ApiEvent, ApiPod, fill_gaps
from agent.errors import InvalidInput
from agent.kube.convert import event_from_dict, pod_from_dict

__all__ = ["Assembled", "assemble", "convert_events"]


@dataclass(frozen=True, slots=True)
class Assembled:
    """One pod ready for the rules, with the events that may concern it."""

    pod: ApiPod
    events: tuple[ApiEvent, ...]
    source: PodDoc
    # What was read generously about the events (containers from messages).
    notes: tuple[str, ...] = ()


def _involved(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    value = doc.get("involvedObject")
    return value if isinstance(value, Mapping) else {}


def _pod_events(events: Sequence[EventDoc]) -> list[Mapping[str, Any]]:
    return [
        inv
        for e in events
        if (inv := _involved(e.doc)).get("kind") in ("Pod", "", None) and inv.get("name")
    ]


def _statuses(doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    status = doc.get("status")
    if not isinstance(status, Mapping):
        return []
    out: list[Mapping[str, Any]] = []
    for key in ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses"):
        group = status.get(key)
        if isinstance(group, list):
            out.extend(s for s in group if isinstance(s, Mapping))
    return out


def _about_its_containers(pd: PodDoc, events: Sequence[EventDoc]) -> set[str]:
    """Pods the events name whose events are about this fragment's containers or images."""
    names = {str(s.get("name")) for s in _statuses(pd.doc) if s.get("name")}
    images = {str(s.get("image")) for s in _statuses(pd.doc) if s.get("image")}
    out: set[str] = set()
    for e in events:
        inv = _involved(e.doc)
        if inv.get("kind") not in ("Pod", "", None) or not inv.get("name"):
            continue
        path = str(inv.get("fieldPath") or "")
        message = str(e.doc.get("message") or "")
        if any(path.endswith(f"{{{n}}}") for n in names) or any(
            f'"{image}"' in message for image in images
        ):
            out.add(str(inv["name"]))
    return out


def _adopt_identity(pd: PodDoc, events: Sequence[EventDoc], only_pod: bool) -> None:
    """Name and namespace for a fragment that lacks them, from events that leave no doubt."""
    meta: dict[str, Any] = pd.doc.setdefault("metadata", {})
    involved = _pod_events([*pd.events, *events])
    if "metadata.name" in pd.missing and meta.get("name") == PLACEHOLDER_POD:
        names = {str(inv["name"]) for inv in involved}
        about = _about_its_containers(pd, [*pd.events, *events]) if len(names) > 1 else set()
        if only_pod and len(names) == 1:
            meta["name"] = names.pop()
            pd.notes.append(
                f"pod name {meta['name']} taken from the events, the only pod they name"
            )
        elif only_pod and len(about) == 1:
            meta["name"] = about.pop()
            pd.notes.append(
                f"pod name {meta['name']} taken from the events: the only pod whose events "
                "name its containers or their images"
            )
        else:
            why = "no events name a pod" if not names else "the events name several pods"
            pd.notes.append(f"pod name unknown ({why}): commands show {PLACEHOLDER_POD}")
    if "metadata.namespace" in pd.missing and not meta.get("namespace"):
        spaces = {
            str(inv["namespace"])
            for inv in involved
            if inv.get("name") == meta.get("name") and inv.get("namespace")
        }
        if len(spaces) == 1:
            meta["namespace"] = spaces.pop()
            pd.notes.append(f"namespace {meta['namespace']} taken from the events")
        else:
            # Events printed without a namespace still match the placeholder:
            # the rules compare namespaces only when both sides have one.
            meta["namespace"] = PLACEHOLDER_NAMESPACE
            why = "the events name several" if spaces else "nothing names it"
            pd.notes.append(f"namespace unknown ({why}): commands show {PLACEHOLDER_NAMESPACE}")


def _event(e: EventDoc, doc: Mapping[str, Any]) -> ApiEvent:
    try:
        return event_from_dict(doc)
    except InvalidInput as exc:
        where = f"{e.where}: " if e.where else ""
        raise InvalidInput(f"events input: {where}{exc.message}") from None


def convert_events(events: Sequence[EventDoc]) -> tuple[ApiEvent, ...]:
    """Event documents as the rules take them; ``InvalidInput`` naming the bad one."""
    return tuple(_event(e, e.doc) for e in events)


def _events_for(
    pod: ApiPod, events: Sequence[EventDoc], shared: tuple[ApiEvent, ...]
) -> tuple[tuple[ApiEvent, ...], int]:
    """The events for ``pod``: printed ones about it get their container from the message."""
    out = list(shared)
    placed = 0
    for e in events:
        doc = e.doc
        inv = _involved(doc)
        if e.textual and not inv.get("fieldPath") and inv.get("name") == pod.name:
            path = infer_field_path(doc, pod)
            if path is not None:
                doc = {**doc, "involvedObject": {**inv, "fieldPath": path}}
                placed += 1
        out.append(_event(e, doc))
    return tuple(out), placed


def assemble(pods: Sequence[PodDoc], events: Sequence[EventDoc]) -> list[Assembled]:
    """Every pod converted and gap-filled, with the events it may be matched against.

    ``events`` are those given apart (``--events``); each pod's own (from
    describe) come with it. ``InvalidInput`` names the pod or event at fault.
    """
    shared_docs = [e for e in events if not e.textual]
    printed = [e for e in events if e.textual]
    shared = convert_events(shared_docs)
    out: list[Assembled] = []
    for pd in pods:
        if pd.partial:
            _adopt_identity(pd, events, only_pod=len(pods) == 1)
        try:
            pod = pod_from_dict(pd.doc)
        except InvalidInput as exc:
            where = f"{pd.where}: " if pd.where else ""
            raise InvalidInput(f"pod input: {where}{exc.message}") from None
        if pd.partial:
            pod = fill_gaps(pod, pd.missing, pd.notes)
        own, placed = _events_for(pod, [*pd.events, *printed], shared)
        notes: tuple[str, ...] = ()
        if placed:
            notes = (
                f"the container of {placed} printed event{'s' if placed != 1 else ''} "
                "read from its message or from which container is in the state it explains",
            )
        out.append(Assembled(pod, own, pd, notes))
    return out
