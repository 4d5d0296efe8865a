"""Which pod shape a JSON or YAML document is, and the Pod document it stands for.

Recognised, item by item (documents, List items, sequence entries):

``pod``
    a whole Pod: ``metadata.name`` and ``spec.containers``, as ``kubectl get
    pod -o yaml|json`` prints it (managedFields and the rest are ignored)
``pod-without-spec``
    metadata and status, no spec: the rules take the containers from the statuses
``pod-without-metadata``
    spec and status without a name
``status``
    ``{"status": {...}}``: the ``status:`` block pasted with its key
``status-body``
    the inside of ``status:`` (phase, conditions, containerStatuses at the top)
``container-statuses``
    a list of container statuses (``containerStatuses`` pasted alone)
``container-status``
    one container status (``state``, ``lastState``, ``restartCount``...)

Anything else is refused with what was recognised and what a pod needs.

Part of the wiring layer: imports ``_text``, ``_types``, the domain and the errors only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agent.cli.pastes._text import shown
from agent.cli.pastes._types import PodDoc, PodInput
from agent.domain.kubemodel import GAP_PHASE, GAP_RESTART_POLICY, GAP_SIDECARS, GAP_SPEC
from agent.errors import InvalidInput

__all__ = ["PLACEHOLDER_NAMESPACE", "PLACEHOLDER_POD", "SHAPE_WORDS", "pods_from_documents"]

PLACEHOLDER_POD = "<pod>"
PLACEHOLDER_NAMESPACE = "<namespace>"

SHAPE_WORDS: Mapping[str, str] = {
    "pod": "a Pod (kubectl get pod -o yaml|json)",
    "pod-list": "a List of Pods (kubectl get pods -o yaml|json)",
    "pod-without-spec": "a Pod without spec (metadata and status)",
    "pod-without-metadata": "a Pod without metadata.name (spec and status)",
    "status": "a Pod's status: block, without metadata or spec",
    "status-body": "the fields of a Pod's status (phase, conditions, containerStatuses)",
    "container-statuses": "a containerStatuses list",
    "container-status": "one container status",
    "describe": "kubectl describe pod text",
    "mixed": "documents of several shapes",
}

_POD_KEYS = frozenset({"metadata", "spec", "status"})
_STATUS_KEYS = frozenset(
    {
        "phase",
        "conditions",
        "containerStatuses",
        "initContainerStatuses",
        "ephemeralContainerStatuses",
        "hostIP",
        "hostIPs",
        "podIP",
        "podIPs",
        "startTime",
        "qosClass",
        "reason",
        "message",
        "nominatedNodeName",
        "resize",
        "resourceClaimStatuses",
        "observedGeneration",
    }
)
_STATUS_CORE = frozenset(
    {
        "phase",
        "conditions",
        "containerStatuses",
        "initContainerStatuses",
        "ephemeralContainerStatuses",
    }
)
_CONTAINER_STATUS_KEYS = frozenset(
    {
        "name",
        "state",
        "lastState",
        "ready",
        "restartCount",
        "image",
        "imageID",
        "containerID",
        "started",
        "allocatedResources",
        "allocatedResourcesStatus",
        "resources",
        "volumeMounts",
        "user",
        "stopSignal",
    }
)
_CONTAINER_STATUS_CORE = frozenset({"state", "lastState", "restartCount"})
_STATUS_LISTS = ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses")


def _is_container_status(d: object) -> bool:
    return (
        isinstance(d, Mapping)
        and bool(d)
        and all(isinstance(k, str) for k in d)
        and set(d) <= _CONTAINER_STATUS_KEYS
        and bool(set(d) & _CONTAINER_STATUS_CORE)
    )


def _is_status_body(d: Mapping[str, Any]) -> bool:
    keys = {k for k in d if isinstance(k, str)}
    return bool(keys) and keys <= _STATUS_KEYS and bool(keys & _STATUS_CORE)


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _name_statuses(status: dict[str, Any], missing: list[str], notes: list[str]) -> None:
    """Placeholder names for container statuses without one, so each can be told apart."""
    for key in _STATUS_LISTS:
        group = status.get(key)
        if not isinstance(group, list):
            continue
        unnamed = [i for i, s in enumerate(group) if isinstance(s, Mapping) and not s.get("name")]
        if not unnamed:
            continue
        stem = "init" if key == "initContainerStatuses" else "container"
        named: list[Any] = list(group)
        labels: list[str] = []
        for n, i in enumerate(unnamed):
            label = f"<{stem}>" if len(unnamed) == 1 else f"<{stem}-{n + 1}>"
            named[i] = {**group[i], "name": label}
            labels.append(label)
        status[key] = named
        missing.append(f"status.{key}[].name")
        notes.append(f"{key} without a name called {', '.join(labels)}")


def _has_status_content(status: Mapping[str, Any]) -> bool:
    return any(v not in (None, "", [], {}) for v in status.values())


def _fragment(doc: Mapping[str, Any], shape: str, where: str) -> PodDoc:
    """A PodDoc for a pod-like document that is not a whole object."""
    meta = dict(_mapping(doc.get("metadata")))
    spec = _mapping(doc.get("spec"))
    status = dict(_mapping(doc.get("status")))
    missing: list[str] = []
    notes: list[str] = []
    if not meta.get("name"):
        missing.append("metadata.name")
        meta["name"] = PLACEHOLDER_POD
    if not meta.get("namespace"):
        missing.append("metadata.namespace")
    containers = spec.get("containers")
    if not containers:
        missing.append(GAP_SPEC)
    else:
        if not spec.get("restartPolicy"):
            missing.append(GAP_RESTART_POLICY)
        inits = spec.get("initContainers")
        if isinstance(inits, list) and any(
            isinstance(c, Mapping) and "restartPolicy" not in c for c in inits
        ):
            missing.append(GAP_SIDECARS)
    if not status.get("phase"):
        missing.append(GAP_PHASE)
    _name_statuses(status, missing, notes)
    out = {**doc, "metadata": meta, "status": status}
    return PodDoc(doc=out, shape=shape, where=where, missing=missing, notes=notes)


def _nothing_to_read(doc: Mapping[str, Any], where: str) -> InvalidInput:
    prefix = f"{where}: " if where else ""
    name = _mapping(doc.get("metadata")).get("name")
    if name:
        return InvalidInput(
            f"{prefix}recognised a Pod named {name} with neither spec nor status: nothing to "
            "diagnose (a pod needs at least its status: phase, conditions or containerStatuses)"
        )
    return InvalidInput(
        f"{prefix}not a Pod: metadata.name is missing, and there is no spec or status to "
        "diagnose from (recognised: a document with "
        + (", ".join(sorted(shown(k) for k in doc)) or "nothing")
        + ")"
    )


def _pod_doc(item: Mapping[str, Any], where: str) -> PodDoc:
    """One item that should be a pod, in whichever shape it came."""
    where_is = f"{where} is" if where else "it is"
    kind = item.get("kind")
    if kind is not None and kind != "Pod":
        if kind in ("Event", "EventList") or str(kind).endswith("Event"):
            raise InvalidInput(
                f"{where_is} an {shown(kind)}, not a Pod: give events with --events, next to "
                "the pod"
            )
        raise InvalidInput(
            f"{where_is} a {shown(kind)}, not a Pod; give `kubectl get pod -o yaml` output"
        )
    if _is_container_status(item):
        return _fragment({"status": {"containerStatuses": [dict(item)]}}, "container-status", where)
    if kind is None and not (set(item) & _POD_KEYS) and _is_status_body(item):
        return _fragment({"status": dict(item)}, "status-body", where)
    if kind is None and not (set(item) & _POD_KEYS):
        keys = ", ".join(sorted(shown(k) for k in item)[:8]) or "none"
        raise InvalidInput(
            f"{where_is} not a pod in any shape read here (recognised: a mapping with keys "
            f"{keys}); a pod needs metadata/spec/status, or the status fields (phase, "
            "conditions, containerStatuses), or a container status (state, lastState, "
            "restartCount)"
        )
    meta = _mapping(item.get("metadata"))
    spec = _mapping(item.get("spec"))
    status = _mapping(item.get("status"))
    for key in ("metadata", "spec", "status"):
        value = item.get(key)
        if value is not None and not isinstance(value, Mapping):
            # Leave the message to the converter, which names the field.
            return PodDoc(doc=dict(item), shape="pod", where=where)
    if meta.get("name") and spec.get("containers"):
        return PodDoc(doc=dict(item), shape="pod", where=where)
    if not _has_status_content(status) and not spec.get("containers"):
        raise _nothing_to_read(item, where)
    if not spec.get("containers") and not status:
        raise _nothing_to_read(item, where)
    if not meta and not spec:
        shape = "status"
    elif not spec.get("containers"):
        shape = "pod-without-spec"
    else:
        shape = "pod-without-metadata"
    return _fragment(item, shape, where)


def _container_status_list(items: Sequence[Any], where: str) -> PodDoc:
    status = {"containerStatuses": [dict(s) for s in items]}
    return _fragment({"status": status}, "container-statuses", where)


def pods_from_documents(docs: Sequence[Any]) -> PodInput:
    """The pods in the loaded documents, each with its shape; ``InvalidInput`` if there are none."""
    pods: list[PodDoc] = []
    single = len(docs) == 1
    list_seen = False
    for n, doc in enumerate(docs):
        prefix = f"document {n + 1}: " if len(docs) > 1 else ""
        if isinstance(doc, list):
            if doc and all(_is_container_status(s) for s in doc):
                pods.append(_container_status_list(doc, prefix.rstrip(": ")))
                continue
            items: Any = doc
            single = False
            list_seen = True
        elif isinstance(doc, str):
            raise InvalidInput(
                f"{prefix}expected a Pod or a List, got text that is no shape read here "
                f"({doc[:40]!r}...): give YAML or JSON of a Pod, its status: block or its "
                "containerStatuses, or kubectl describe pod text"
            )
        elif not isinstance(doc, Mapping):
            raise InvalidInput(f"{prefix}expected a Pod or a List, got {type(doc).__name__}")
        elif isinstance(doc.get("items"), list) or str(doc.get("kind", "")).endswith("List"):
            items = doc.get("items") or []
            single = False
            list_seen = True
            if not isinstance(items, list):
                raise InvalidInput(f"{prefix}items is not a list")
        else:
            pods.append(_pod_doc(doc, prefix.rstrip(": ")))
            continue
        for i, item in enumerate(items):
            path = f"{prefix}items[{i}]"
            if not isinstance(item, Mapping):
                raise InvalidInput(f"{path} is not an object")
            pods.append(_pod_doc(item, path))
    if not pods:
        raise InvalidInput("the List holds no Pod")
    shapes = list(dict.fromkeys(p.shape for p in pods))
    if shapes == ["pod"] and list_seen:
        shape = "pod-list"
    elif len(shapes) == 1:
        shape = shapes[0]
    else:
        shape = "mixed"
    recognised = SHAPE_WORDS[shape]
    if len(pods) > 1 and shape not in ("pod-list", "mixed"):
        recognised = f"{len(pods)} x {recognised}"
    if shape == "mixed":
        recognised += ": " + ", ".join(SHAPE_WORDS[s] for s in shapes)
    return PodInput(shape=shape, recognised=recognised, pods=pods, single=single)
