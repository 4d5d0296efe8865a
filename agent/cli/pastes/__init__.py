"""What people paste about a pod, read into the documents the rules start from.

``read_pods`` takes the text given with ``-f``: Pod objects and Lists (JSON or
YAML, ``-o yaml`` noise included), fragments of a pod (a ``status:`` block,
its fields alone, a ``containerStatuses`` list, one container status, a pod
without spec or without a name), or ``kubectl describe pod`` text of one or
many pods in the current and older layouts. ``read_events`` takes
``--events``: ``kubectl get events`` tables in any layout, or Event objects.
``assemble`` turns both into ``ApiPod`` and ``ApiEvent``, recording on each
pod what its source lacked (``ApiPod.gaps``). ``agent.cli.pastes.dump``
streams a ``kubectl cluster-info dump``.

Everything that is recognised but cannot be used is refused with one
``InvalidInput`` that names what was recognised and what is missing.

Part of the wiring layer: its modules import each other, the domain, the errors,
``agent.kube.convert`` and PyYAML; nothing that reaches a node or a cluster.
"""

from __future__ import annotations

import re
from datetime import datetime

from agent.cli.pastes._assemble import Assembled, assemble, convert_events
from agent.cli.pastes._describe import is_pod_describe, looks_like_describe, parse_describe
from agent.cli.pastes._events import looks_like_events_table, read_events
from agent.cli.pastes._load import load_documents, load_with_notes
from agent.cli.pastes._shapes import SHAPE_WORDS, pods_from_documents
from agent.cli.pastes._types import EventDoc, EventsInput, PodDoc, PodInput
from agent.errors import InvalidInput

__all__ = [
    "SHAPE_WORDS",
    "Assembled",
    "EventDoc",
    "EventsInput",
    "PodDoc",
    "PodInput",
    "assemble",
    "convert_events",
    "load_documents",
    "load_with_notes",
    "read_events",
    "read_pods",
]

_PODS_TABLE = re.compile(r"^\s*(?:NAMESPACE\s+)?NAME\s+READY\s+STATUS\s+RESTARTS\b")
_OLD_EVENTS = re.compile(r"^\s+FirstSeen\s+LastSeen\s+Count", re.M)


def _describe_input(text: str, now: datetime) -> PodInput:
    if not is_pod_describe(text):
        raise InvalidInput(
            "pod input: recognised kubectl describe text, but not of a Pod (it has no "
            "Containers: section); give `kubectl describe pod NAME` output"
        )
    pods = parse_describe(text, now)
    nameless = [p.where or "it" for p in pods if not p.doc["metadata"].get("name")]
    if nameless:
        raise InvalidInput(f"pod input: describe text: {nameless[0]} has an empty Name:")
    layout = "older layout" if _OLD_EVENTS.search(text) else "current layout"
    count = f"{len(pods)} pods" if len(pods) > 1 else "one pod"
    return PodInput(
        shape="describe",
        recognised=f"kubectl describe pod text ({count}, {layout})",
        pods=pods,
        single=len(pods) == 1,
    )


def read_pods(text: str, now: datetime) -> PodInput:
    """The pods in ``-f`` input and the shape they were recognised in; ``InvalidInput`` else."""
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise InvalidInput("pod input: the input is empty")
    if looks_like_describe(text):
        return _describe_input(text, now)
    if looks_like_events_table(text):
        raise InvalidInput(
            "pod input: recognised a kubectl get events table, not a pod; give it with "
            "--events, next to the pod's YAML, status or describe text given with -f"
        )
    first = next(ln for ln in text.splitlines() if ln.strip())
    if _PODS_TABLE.match(first):
        raise InvalidInput(
            "pod input: recognised a kubectl get pods table; it holds only the STATUS, READY "
            "and RESTARTS columns, not the container states the rules read; give "
            "`kubectl get pod NAME -o yaml` or `kubectl describe pod NAME`"
        )
    docs, notes = load_with_notes(text, "pod input")
    try:
        result = pods_from_documents(docs)
    except InvalidInput as exc:
        raise InvalidInput(f"pod input: {exc.message}") from None
    result.notes.extend(notes)
    return result
