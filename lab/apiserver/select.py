"""Field and label selectors of the fake API server.

Only the field labels the real server supports for each resource are
accepted; any other one is a 400 "field label not supported", because a
client that filters on an unsupported field must fail here the way it would
against a cluster, not silently get everything back.

Owns the parsing and matching of selectors. Imports ``lab.apiserver.status``
only, for its errors.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from lab.apiserver.status import ApiStatusError, bad_request

JSON = dict[str, Any]
Getter = Callable[[JSON], str]


def _field(*path: str, default: str = "") -> Getter:
    def get(obj: JSON) -> str:
        cur: Any = obj
        for part in path:
            if not isinstance(cur, dict):
                return default
            cur = cur.get(part)
        if cur is None:
            return default
        if isinstance(cur, bool):
            return "true" if cur else "false"
        return str(cur)

    return get


_META: Final[dict[str, Getter]] = {
    "metadata.name": _field("metadata", "name"),
    "metadata.namespace": _field("metadata", "namespace"),
}

FIELD_LABELS: Final[Mapping[str, Mapping[str, Getter]]] = {
    "pods": {
        **_META,
        "spec.nodeName": _field("spec", "nodeName"),
        "spec.restartPolicy": _field("spec", "restartPolicy"),
        "spec.schedulerName": _field("spec", "schedulerName"),
        "spec.serviceAccountName": _field("spec", "serviceAccountName"),
        "spec.hostNetwork": _field("spec", "hostNetwork", default="false"),
        "status.phase": _field("status", "phase"),
        "status.podIP": _field("status", "podIP"),
        "status.nominatedNodeName": _field("status", "nominatedNodeName"),
    },
    "events": {
        **_META,
        "involvedObject.kind": _field("involvedObject", "kind"),
        "involvedObject.namespace": _field("involvedObject", "namespace"),
        "involvedObject.name": _field("involvedObject", "name"),
        "involvedObject.uid": _field("involvedObject", "uid"),
        "involvedObject.apiVersion": _field("involvedObject", "apiVersion"),
        "involvedObject.resourceVersion": _field("involvedObject", "resourceVersion"),
        "involvedObject.fieldPath": _field("involvedObject", "fieldPath"),
        "reason": _field("reason"),
        "reportingComponent": _field("reportingComponent"),
        "source": _field("source", "component"),
        "type": _field("type"),
    },
    "services": {
        **_META,
        "spec.clusterIP": _field("spec", "clusterIP"),
        "spec.type": _field("spec", "type"),
    },
    "nodes": {
        "metadata.name": _field("metadata", "name"),
        "spec.unschedulable": _field("spec", "unschedulable", default="false"),
    },
    "namespaces": {
        "metadata.name": _field("metadata", "name"),
        "status.phase": _field("status", "phase"),
    },
}


@dataclass(frozen=True)
class FieldRequirement:
    """One field selector term: ``label=value`` or ``label!=value``."""

    label: str
    equal: bool
    value: str
    getter: Getter

    def matches(self, obj: JSON) -> bool:
        """Whether ``obj``'s field holds (or, for ``!=``, does not hold) the value."""
        return (self.getter(obj) == self.value) == self.equal


@dataclass(frozen=True)
class LabelRequirement:
    """One label selector term: in, notin, exists (``key``) or not exists (``!key``)."""

    key: str
    op: str  # "in", "notin", "exists", "!"
    values: frozenset[str]

    def matches(self, labels: Mapping[str, Any]) -> bool:
        """Whether ``labels`` satisfy this term."""
        present = self.key in labels
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op == "in":
            return present and labels[self.key] in self.values
        # "notin" (and "!=") also matches objects that lack the label entirely.
        return not present or labels[self.key] not in self.values


@dataclass(frozen=True)
class Selector:
    """Which objects a list or watch sees: namespace, fields and labels, all ANDed."""

    namespace: str | None = None
    fields: tuple[FieldRequirement, ...] = ()
    labels: tuple[LabelRequirement, ...] = ()

    @property
    def filters(self) -> bool:
        """True when fields or labels narrow the result (the namespace does not count)."""
        return bool(self.fields or self.labels)

    def matches(self, obj: JSON) -> bool:
        """Whether ``obj`` is in the namespace and passes every field and label term."""
        meta = obj.get("metadata") or {}
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        if not all(req.matches(obj) for req in self.fields):
            return False
        labels = meta.get("labels") or {}
        return all(req.matches(labels) for req in self.labels)


def parse_selector(
    resource: str, namespace: str | None, field_selector: str, label_selector: str
) -> Selector:
    """The selector of a list or watch request, from its query parameters."""
    return Selector(
        namespace=namespace,
        fields=parse_field_selector(resource, field_selector),
        labels=parse_label_selector(label_selector),
    )


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    start = 0
    escaped = False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == sep:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _split_term(selector: str, term: str) -> tuple[str, str, str]:
    escaped = False
    for i, ch in enumerate(term):
        if escaped:
            escaped = False
            continue
        if ch == "\\":
            escaped = True
            continue
        for op in ("!=", "==", "="):
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op) :]
    raise bad_request(f"invalid selector: '{selector}'; can't understand '{term}'")


def _unescape(value: str) -> str:
    out: list[str] = []
    escaped = False
    for ch in value:
        if escaped:
            if ch not in "\\,=":
                raise bad_request(f"invalid field selector value {value!r}: bad escape '\\{ch}'")
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in ",=":
            raise bad_request(f"invalid field selector value {value!r}: unescaped '{ch}'")
        else:
            out.append(ch)
    if escaped:
        raise bad_request(f"invalid field selector value {value!r}: trailing '\\'")
    return "".join(out)


def parse_field_selector(resource: str, selector: str) -> tuple[FieldRequirement, ...]:
    """A ``fieldSelector`` as the real server parses it; only its field labels for ``resource``."""
    supported = FIELD_LABELS.get(resource, _META)
    reqs: list[FieldRequirement] = []
    for term in _split_unescaped(selector, ","):
        if not term:
            continue
        label, op, raw_value = _split_term(selector, term)
        label = label.strip()
        getter = supported.get(label)
        if getter is None:
            raise ApiStatusError(400, "BadRequest", f"field label not supported: {label}")
        reqs.append(FieldRequirement(label, op != "!=", _unescape(raw_value), getter))
    return tuple(reqs)


_KEY_RE = re.compile(
    r"^(?:[a-z0-9](?:[-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_VALUE_RE = re.compile(r"^(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_SET_RE = re.compile(r"^(\S+)\s+(in|notin)\s*\((.*)\)$")


def _split_top_level(selector: str) -> list[str]:
    """Split on commas that are not inside the parentheses of ``in (a,b)``."""
    parts: list[str] = []
    depth = 0
    start = 0
    for i, ch in enumerate(selector):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(selector[start:i])
            start = i + 1
    parts.append(selector[start:])
    return parts


def _label_error(term: str, why: str) -> ApiStatusError:
    return bad_request(f"unable to parse requirement: {term!r}: {why}")


def _check_key(term: str, key: str) -> str:
    if not _KEY_RE.match(key):
        raise _label_error(term, f"invalid label key {key!r}")
    return key


def _check_value(term: str, value: str) -> str:
    if len(value) > 63 or not _VALUE_RE.match(value):
        raise _label_error(term, f"invalid label value {value!r}")
    return value


def _parse_label_term(term: str) -> LabelRequirement:
    if term.startswith("!"):
        return LabelRequirement(_check_key(term, term[1:].strip()), "!", frozenset())
    found = _SET_RE.match(term)
    if found:
        key, op, inner = found.groups()
        values = frozenset(_check_value(term, v.strip()) for v in inner.split(","))
        return LabelRequirement(_check_key(term, key), op, values)
    for op in ("!=", "==", "="):
        if op in term:
            key, value = term.split(op, 1)
            value = _check_value(term, value.strip())
            return LabelRequirement(
                _check_key(term, key.strip()), "notin" if op == "!=" else "in", frozenset({value})
            )
    return LabelRequirement(_check_key(term, term), "exists", frozenset())


def parse_label_selector(selector: str) -> tuple[LabelRequirement, ...]:
    """A ``labelSelector`` in equality-based or set-based form."""
    if not selector.strip():
        return ()
    reqs: list[LabelRequirement] = []
    for raw in _split_top_level(selector):
        term = raw.strip()
        if not term:
            raise _label_error(selector, "empty requirement")
        reqs.append(_parse_label_term(term))
    return tuple(reqs)
