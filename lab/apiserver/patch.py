"""The three PATCH flavours the fake API server accepts.

The official Python client sends ``application/strategic-merge-patch+json``
for every dict body and ``application/json-patch+json`` for list bodies, so
both must work besides plain JSON merge patch. Strategic merge is done with a
per-resource table of the list merge keys that matter for pods, events and
services (containers by name, conditions by type, ...); fields outside the
table are replaced as in a JSON merge patch, which is also what the real
server does for lists without a patch strategy.

Inputs are never modified: stored objects are shared with open watches.

Owns JSON patch, JSON merge patch and strategic merge patch. Imports
``lab.apiserver.status`` only, for its errors.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Final

from lab.apiserver.status import ApiStatusError, bad_request, unsupported_media_type

JSON = dict[str, Any]

MERGE_PATCH: Final = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH: Final = "application/strategic-merge-patch+json"
JSON_PATCH: Final = "application/json-patch+json"

_CONTAINER_LISTS: Final[dict[str, str]] = {
    "env": "name",
    "ports": "containerPort",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "resizePolicy": "resourceName",
}
_META_LISTS: Final[dict[tuple[str, ...], str | None]] = {
    ("metadata", "ownerReferences"): "uid",
    # A merge key of None marks a list of scalars merged as a set.
    ("metadata", "finalizers"): None,
}


def _pod_lists() -> dict[tuple[str, ...], str | None]:
    table: dict[tuple[str, ...], str | None] = dict(_META_LISTS)
    for containers in ("containers", "initContainers", "ephemeralContainers"):
        table[("spec", containers)] = "name"
        for field, key in _CONTAINER_LISTS.items():
            table[("spec", containers, field)] = key
    table.update(
        {
            ("spec", "volumes"): "name",
            ("spec", "imagePullSecrets"): "name",
            ("spec", "hostAliases"): "ip",
            ("spec", "readinessGates"): None,
            ("status", "conditions"): "type",
            ("status", "podIPs"): "ip",
            ("status", "hostIPs"): "ip",
        }
    )
    return table


MERGE_KEYS: Final[Mapping[str, Mapping[tuple[str, ...], str | None]]] = {
    "pods": _pod_lists(),
    "services": {
        **_META_LISTS,
        ("spec", "ports"): "port",
        ("status", "conditions"): "type",
    },
    "events": dict(_META_LISTS),
}


def apply_patch(resource: str, target: JSON, patch: Any, content_type: str) -> JSON:
    """Return ``target`` with ``patch`` applied, as the given media type prescribes."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media == JSON_PATCH:
        if not isinstance(patch, list):
            raise bad_request("json patch must be a list of operations")
        result = json_patch(target, patch)
    elif media in (MERGE_PATCH, STRATEGIC_MERGE_PATCH):
        if not isinstance(patch, dict):
            raise bad_request(f"{media} body must be a JSON object")
        if media == MERGE_PATCH:
            result = merge_patch(target, patch)
        else:
            result = strategic_merge_patch(target, patch, MERGE_KEYS.get(resource, {}), ())
    else:
        raise unsupported_media_type(content_type)
    if not isinstance(result, dict):
        raise ApiStatusError(422, "Invalid", "the patch turned the object into a non-object")
    return result


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: JSON = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(
    target: Any, patch: JSON, keys: Mapping[tuple[str, ...], str | None], path: tuple[str, ...]
) -> Any:
    """A strategic merge patch of ``target`` at ``path``; ``keys`` names each list's merge key."""
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    result: JSON = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            drop = value if isinstance(value, list) else []
            current = result.get(field)
            if isinstance(current, list):
                result[field] = [item for item in current if item not in drop]
            continue
        if key.startswith("$"):
            # $setElementOrder and $retainKeys only steer ordering and pruning.
            continue
        sub = (*path, key)
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            merged = strategic_merge_patch(result.get(key), value, keys, sub)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list) and sub in keys and isinstance(result.get(key), list):
            result[key] = _merge_list(result[key], value, keys, sub)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _merge_list(
    current: list[Any],
    patch: list[Any],
    keys: Mapping[tuple[str, ...], str | None],
    path: tuple[str, ...],
) -> list[Any]:
    merge_key = keys[path]
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [
            copy.deepcopy(item)
            for item in patch
            if not (isinstance(item, dict) and item.get("$patch") == "replace")
        ]
    if merge_key is None:
        merged = list(current)
        merged.extend(copy.deepcopy(item) for item in patch if item not in current)
        return merged
    result = list(current)
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            raise bad_request(f"map in {'.'.join(path)} is missing the merge key {merge_key!r}")
        at = next(
            (
                i
                for i, old in enumerate(result)
                if isinstance(old, dict) and old.get(merge_key) == item[merge_key]
            ),
            None,
        )
        if item.get("$patch") == "delete":
            if at is not None:
                del result[at]
        elif at is None:
            result.append(strategic_merge_patch({}, item, keys, path))
        else:
            result[at] = strategic_merge_patch(result[at], item, keys, path)
    return result


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise bad_request(f"invalid JSON pointer {path!r}")
    if not path:
        return []
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _patch_failed(why: str) -> ApiStatusError:
    return ApiStatusError(422, "Invalid", f"the server rejected our request: {why}")


def _walk(doc: Any, parts: list[str]) -> Any:
    for part in parts:
        if isinstance(doc, dict) and part in doc:
            doc = doc[part]
        elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            raise _patch_failed(f"path /{'/'.join(parts)} does not exist")
    return doc


def _remove(doc: Any, parts: list[str]) -> Any:
    if not parts:
        raise _patch_failed("cannot remove the whole document")
    parent = _walk(doc, parts[:-1])
    last = parts[-1]
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent.pop(int(last))
    raise _patch_failed(f"path /{'/'.join(parts)} does not exist")


def _add(doc: Any, parts: list[str], value: Any) -> Any:
    if not parts:
        return value
    parent = _walk(doc, parts[:-1])
    last = parts[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent):
            parent.insert(int(last), value)
        else:
            raise _patch_failed(f"index {last} out of range")
    else:
        raise _patch_failed(f"path /{'/'.join(parts)} has no container")
    return doc


def json_patch(target: JSON, ops: list[Any]) -> Any:
    """RFC 6902, on a deep copy of ``target``."""
    doc: Any = copy.deepcopy(target)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op:
            raise bad_request("json patch operations must be objects with an 'op'")
        name = op["op"]
        parts = _pointer(op.get("path"))
        if name == "add":
            doc = _add(doc, parts, copy.deepcopy(op.get("value")))
        elif name == "remove":
            _remove(doc, parts)
        elif name == "replace":
            _walk(doc, parts)
            if parts:
                _remove(doc, parts)
            doc = _add(doc, parts, copy.deepcopy(op.get("value")))
        elif name in ("move", "copy"):
            source = _pointer(op.get("from"))
            value = _remove(doc, source) if name == "move" else copy.deepcopy(_walk(doc, source))
            doc = _add(doc, parts, value)
        elif name == "test":
            if _walk(doc, parts) != op.get("value"):
                raise _patch_failed(f"test operation failed at {op.get('path')}")
        else:
            raise bad_request(f"unknown json patch operation {name!r}")
    return doc
