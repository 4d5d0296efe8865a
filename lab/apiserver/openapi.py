"""The OpenAPI v3 documents of the lab API server, and the strict field validation they allow.

``kubectl apply`` (and create, replace) validates by default: it reads
``/openapi/v3``, finds the ``api/v1`` document, and when the PATCH operation
of the object's kind takes a ``fieldValidation`` parameter, it leaves the
checking to the server and sends ``fieldValidation=Strict``. The lab serves
that document for the kinds it stores (Pod, Event, Service, Node) and checks
what such requests send against the same schemas: an unknown field is a 400
naming it, as a real server words it.

The schemas are the upstream ones of Kubernetes 1.37, from the
``kubernetes-validate`` package (its "strict" JSON schemas, generated from
the release's own OpenAPI document), so ``kubectl explain`` reads the real
field descriptions as well. Without that package the documents are not
served and the message says how to install it.

Owns the OpenAPI documents and the unknown-field check. Imports
``lab.apiserver.unserved`` (the groups listed but not served get documents
with their paths, so kubectl sends the request and reads why it is refused);
``kubernetes_validate`` is read as data files.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from lab.apiserver.unserved import unserved_discovery_groups, unserved_kinds

JSON = dict[str, Any]

SCHEMA_RELEASE: Final = "v1.37.0-local-strict"
_REF_MARK: Final = "#/$defs/"
# kind -> (plural, namespaced, definition name)
KINDS: Final[dict[str, tuple[str, bool, str]]] = {
    "Pod": ("pods", True, "io.k8s.api.core.v1.Pod"),
    "Event": ("events", True, "io.k8s.api.core.v1.Event"),
    "Service": ("services", True, "io.k8s.api.core.v1.Service"),
    "Node": ("nodes", False, "io.k8s.api.core.v1.Node"),
}
MISSING_SCHEMAS: Final = (
    "the lab API server has no OpenAPI schemas to validate with: install the "
    "kubernetes-validate package (scripts/install-deps.sh does), or pass --validate=false"
)


class SchemasMissing(Exception):
    """The schema files are not installed."""


@functools.cache
def _definitions() -> dict[str, JSON]:
    spec = importlib.util.find_spec("kubernetes_validate")
    if spec is None or not spec.submodule_search_locations:
        raise SchemasMissing(MISSING_SCHEMAS)
    base = Path(next(iter(spec.submodule_search_locations)))
    path = base / "kubernetes-json-schema" / SCHEMA_RELEASE / "_definitions.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SchemasMissing(f"{MISSING_SCHEMAS} ({path}: {exc})") from None
    defs: dict[str, JSON] = data["$defs"]
    return defs


def _ref_name(ref: str) -> str:
    return ref.rpartition(_REF_MARK)[2]


def _referenced(name: str, defs: dict[str, JSON], seen: set[str]) -> None:
    if name in seen or name not in defs:
        return
    seen.add(name)
    for ref in _refs(defs[name]):
        _referenced(ref, defs, seen)


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and _REF_MARK in ref:
            yield _ref_name(ref)
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _to_openapi(node: Any) -> Any:
    # JSON-schema "type": ["string", "null"] becomes OpenAPI's single type.
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                out[key] = "#/components/schemas/" + _ref_name(value)
            elif key == "type" and isinstance(value, list):
                kinds = [v for v in value if v != "null"]
                if len(kinds) == 1:
                    out[key] = kinds[0]
            else:
                out[key] = _to_openapi(value)
        return out
    if isinstance(node, list):
        return [_to_openapi(v) for v in node]
    return node


def _gvk(kind: str, group: str = "", version: str = "v1") -> list[JSON]:
    return [{"group": group, "version": version, "kind": kind}]


def _operation(
    kind: str, verb: str, *, patch: bool = False, group: str = "", version: str = "v1"
) -> JSON:
    op: JSON = {
        "operationId": f"{verb}{kind}",
        "x-kubernetes-action": verb,
        "x-kubernetes-group-version-kind": _gvk(kind, group, version)[0],
        "responses": {"200": {"description": "OK"}},
    }
    if patch or verb in ("post", "put"):
        op["parameters"] = [
            {
                "name": "fieldValidation",
                "in": "query",
                "description": "Ignore, Warn or Strict: what to do with unknown fields.",
                "schema": {"type": "string", "uniqueItems": True},
            }
        ]
    return op


@functools.cache
def core_v1_document() -> bytes:
    """The ``/openapi/v3/api/v1`` document (JSON bytes)."""
    defs = _definitions()
    wanted: set[str] = set()
    for _, _, definition in KINDS.values():
        _referenced(definition, defs, wanted)
    schemas = {name: _to_openapi(defs[name]) for name in sorted(wanted)}
    for kind, (_, _, definition) in KINDS.items():
        schemas[definition]["x-kubernetes-group-version-kind"] = _gvk(kind)
    served = [(kind, plural, namespaced) for kind, (plural, namespaced, _) in KINDS.items()]
    paths = _paths("", "v1", served + unserved_kinds("", "v1"))
    doc = {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (the podlens stand-in lab)", "version": "v1.37.2-lab"},
        "paths": paths,
        "components": {"schemas": schemas},
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def _paths(group: str, version: str, kinds: list[tuple[str, str, bool]]) -> JSON:
    base = f"/apis/{group}/{version}" if group else f"/api/{version}"
    paths: JSON = {}
    for kind, plural, namespaced in kinds:
        prefix = f"{base}/namespaces/{{namespace}}/{plural}" if namespaced else f"{base}/{plural}"
        paths[prefix] = {
            "get": _operation(kind, "list", group=group, version=version),
            "post": _operation(kind, "post", group=group, version=version),
        }
        paths[prefix + "/{name}"] = {
            verb: _operation(kind, verb, patch=verb == "patch", group=group, version=version)
            for verb in ("get", "put", "patch", "delete")
        }
    return paths


@functools.cache
def group_document(group: str, version: str) -> bytes:
    """The document of a group the lab lists but does not serve: its paths only.

    kubectl then leaves validation to the server, and the request itself
    gets the answer that says what the lab lacks.
    """
    doc = {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (the podlens stand-in lab)", "version": "v1.37.2-lab"},
        "paths": _paths(group, version, unserved_kinds(group, version)),
        "components": {"schemas": {}},
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def _entry(path: str, document: bytes) -> JSON:
    digest = hashlib.sha512(document).hexdigest()[:32].upper()
    return {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}


def discovery_document() -> JSON:
    """The ``/openapi/v3`` index: where each group version's document is, by its hash."""
    paths = {"api/v1": _entry("api/v1", core_v1_document())}
    for group, version in unserved_discovery_groups():
        paths[f"apis/{group}/{version}"] = _entry(
            f"apis/{group}/{version}", group_document(group, version)
        )
    return {"paths": paths}


def unknown_fields(kind: str, obj: Any) -> list[str]:
    """The paths of the fields ``obj`` sets that its kind's schema does not declare."""
    if kind not in KINDS:
        return []
    defs = _definitions()
    found: list[str] = []
    _walk(obj, defs[KINDS[kind][2]], "", defs, found)
    return found


def _walk(value: Any, schema: JSON, path: str, defs: dict[str, JSON], found: list[str]) -> None:
    ref = schema.get("$ref")
    if isinstance(ref, str):
        target = defs.get(_ref_name(ref))
        if target is None:
            return
        schema = target
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(props, dict) and key in props:
                _walk(item, props[key], where, defs, found)
            elif isinstance(extra, dict):
                _walk(item, extra, where, defs, found)
            elif extra is False or (isinstance(props, dict) and extra is None):
                found.append(where)
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for index, item in enumerate(value):
                _walk(item, items, f"{path}[{index}]", defs, found)
