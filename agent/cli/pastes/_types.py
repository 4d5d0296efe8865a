"""What reading a paste gives: API-shaped documents, and what they lack.

Part of the wiring layer: imports the standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EventDoc", "EventsInput", "PodDoc", "PodInput"]


@dataclass(slots=True)
class PodDoc:
    """One pod as read: a Pod document in the API's shape, and what the source lacked.

    ``missing`` lists field paths the source did not have (empty for a whole
    object); ``notes`` say what the reader filled in and from what.
    ``shape`` names the form it came in (``pod``, ``status``, ``describe``...).
    """

    doc: dict[str, Any]
    shape: str
    where: str = ""
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # Events that came with the pod itself (the Events table of describe).
    events: list[EventDoc] = field(default_factory=list)

    @property
    def partial(self) -> bool:
        """Whether the source lacked something a whole Pod object has."""
        return bool(self.missing)


@dataclass(frozen=True, slots=True)
class EventDoc:
    """One core/v1 Event document; ``textual`` when rebuilt from a printed table.

    A printed table has no ``involvedObject.fieldPath`` (except the old
    SUBOBJECT column), so which container it concerns is read from its
    message later, once the pod's containers are known.
    """

    doc: Mapping[str, Any]
    textual: bool = False
    # Where in the input it was ("items[3]"), for error messages.
    where: str = ""


@dataclass(slots=True)
class PodInput:
    """Everything ``-f`` held: the pods, how the input was recognised, and notes."""

    shape: str
    recognised: str
    pods: list[PodDoc]
    single: bool
    notes: list[str] = field(default_factory=list)

    @property
    def classic(self) -> bool:
        """Whole Pod objects (``kubectl get -o yaml|json``), the form read before anything else."""
        return self.shape in ("pod", "pod-list") and not any(p.partial for p in self.pods)


@dataclass(slots=True)
class EventsInput:
    """Everything ``--events`` held."""

    shape: str
    recognised: str
    events: list[EventDoc]
    notes: list[str] = field(default_factory=list)

    @property
    def classic(self) -> bool:
        """Event objects (``kubectl get events -o yaml|json``)."""
        return self.shape == "events"
