"""Object store, change history and watch fan-out of the fake API server.

One lock guards objects, the resourceVersion counter, the history and the
set of open watches, so a watch registers atomically with the snapshot it
replays: nothing can slip in between. Writers only append to per-watch
queues (which never block), so a watcher that reads slowly delays nobody
but itself.

Stored dicts are never modified after they are committed; every change
builds a new dict. That lets history entries, open watches and list
responses share them without copying.

Owns the objects, resourceVersions, history and watch queues. Imports
``lab.apiserver.select`` and ``lab.apiserver.status``, and ``lab.apitime``
for timestamps.
"""

from __future__ import annotations

import queue
import secrets
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from lab.apiserver.select import Selector
from lab.apiserver.status import (
    STALE_OBJECT,
    already_exists,
    bad_request,
    conflict,
    expired,
    invalid,
    not_found,
)
from lab.apitime import rfc3339

JSON = dict[str, Any]
EventType = Literal["ADDED", "MODIFIED", "DELETED"]
Scope = Literal["all", "main", "status"]


@dataclass(frozen=True)
class ResourceType:
    """A resource the server serves: its names and whether it has a status subresource."""

    name: str
    kind: str
    list_kind: str
    short_names: tuple[str, ...]
    has_status: bool
    # Cluster-scoped objects are kept under the namespace "" and carry none.
    namespaced: bool = True


RESOURCES: Final[dict[str, ResourceType]] = {
    r.name: r
    for r in (
        ResourceType("pods", "Pod", "PodList", ("po",), has_status=True),
        ResourceType("events", "Event", "EventList", ("ev",), has_status=False),
        ResourceType("services", "Service", "ServiceList", ("svc",), has_status=True),
        ResourceType("nodes", "Node", "NodeList", ("no",), has_status=True, namespaced=False),
    )
}
_ALIASES: Final[dict[str, str]] = {
    alias.lower(): r.name
    for r in RESOURCES.values()
    for alias in (r.name, r.kind, r.name[:-1], *r.short_names)
}


def resolve_resource(kind: str) -> str:
    """``"Pod"``, ``"pod"``, ``"pods"`` and ``"po"`` all name the pods resource."""
    try:
        return _ALIASES[kind.lower()]
    except KeyError:
        raise ValueError(f"unknown resource {kind!r}; known: {sorted(RESOURCES)}") from None


# The alphabet the real server draws generateName suffixes from (no vowels,
# no look-alike characters), so generated names look like a cluster's.
_SUFFIX_ALPHABET: Final = "bcdfghjklmnpqrstvwxz2456789"


def _generated_name(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(5))


def _grace_period(resource: str, obj: JSON, asked: int | None) -> int:
    if resource != "pods":
        return 0
    spec = obj.get("spec") or {}
    phase = (obj.get("status") or {}).get("phase")
    # The real pod strategy: an unscheduled or finished pod has nothing to stop.
    if not spec.get("nodeName") or phase in ("Succeeded", "Failed"):
        return 0
    if asked is not None and asked >= 0:
        # 0 is a forced delete: gone from the API at once, the kubelet kills after.
        return asked
    default = spec.get("terminationGracePeriodSeconds")
    return default if isinstance(default, int) and default >= 0 else 30


def _removable(obj: JSON) -> bool:
    meta = obj.get("metadata") or {}
    return (
        bool(meta.get("deletionTimestamp"))
        and not meta.get("finalizers")
        and (meta.get("deletionGracePeriodSeconds") in (0, None))
    )


def with_resource_version(obj: JSON, rv: int) -> JSON:
    """``obj`` with ``metadata.resourceVersion`` set to ``rv``."""
    return {**obj, "metadata": {**obj.get("metadata", {}), "resourceVersion": str(rv)}}


@dataclass(frozen=True)
class CommittedChange:
    """One committed write, kept in the history for watches to replay."""

    rv: int
    resource: str
    type: EventType
    obj: JSON
    prev: JSON | None


# Control messages put on a watch queue besides CommittedChange records.
BOOKMARK: Final = "bookmark"
DROP: Final = "drop"
STOP: Final = "stop"


@dataclass(eq=False)
class Watch:
    """One open watch: what it selects and the queue its changes arrive on."""

    resource: str
    selector: Selector
    after_rv: int
    bookmarks: bool
    conn: socket.socket | None
    queue: queue.SimpleQueue[CommittedChange | str] = field(default_factory=queue.SimpleQueue)
    # The newest resourceVersion this watch has been brought up to; bookmarks report it.
    progress: int = 0
    closed: threading.Event = field(default_factory=threading.Event)

    def render(self, change: CommittedChange) -> tuple[str, JSON] | None:
        """The event this watch sees for ``change``, if any.

        An update that moves an object out of the selection is a DELETED
        carrying the previous state (at the new resourceVersion), and one
        that moves it in is an ADDED, as the real watch cache does.
        """
        if change.resource != self.resource or change.rv <= self.after_rv:
            return None
        cur = change.type != "DELETED" and self.selector.matches(change.obj)
        prev = change.prev is not None and self.selector.matches(change.prev)
        if change.type == "DELETED":
            return ("DELETED", change.obj) if prev else None
        if cur and prev:
            return "MODIFIED", change.obj
        if cur:
            return "ADDED", change.obj
        if prev and change.prev is not None:
            return "DELETED", with_resource_version(change.prev, change.rv)
        return None


class Store:
    """Every object, the resourceVersion counter, the change history and the open watches."""

    def __init__(self, max_history: int) -> None:
        self._lock = threading.Lock()
        self._objects: dict[str, dict[tuple[str, str], JSON]] = {r: {} for r in RESOURCES}
        self._rv = 0
        self._history: deque[CommittedChange] = deque()
        # The history holds every change with rv > _compacted.
        self._compacted = 0
        self._max_history = max(1, max_history)
        self._watches: set[Watch] = set()

    @property
    def resource_version(self) -> int:
        """The resourceVersion of the last committed change."""
        with self._lock:
            return self._rv

    # -- writes ---------------------------------------------------------------

    def _commit(self, resource: str, kind: EventType, obj: JSON, prev: JSON | None) -> JSON:
        self._rv += 1
        obj = with_resource_version(obj, self._rv)
        meta = obj["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        if kind == "DELETED":
            del self._objects[resource][key]
        else:
            self._objects[resource][key] = obj
        change = CommittedChange(self._rv, resource, kind, obj, prev)
        self._history.append(change)
        while len(self._history) > self._max_history:
            self._compacted = self._history.popleft().rv
        for watch in self._watches:
            watch.queue.put(change)
        return obj

    def create(self, resource: str, namespace: str, body: JSON) -> JSON:
        """Create an object, named from ``generateName`` if asked; 409 if the name is taken."""
        rtype = RESOURCES[resource]
        meta = dict(body.get("metadata") or {})
        name = meta.get("name") or ""
        generate = meta.get("generateName") or ""
        if not name and not generate:
            raise invalid(
                rtype.kind,
                "",
                "metadata.name",
                "FieldValueRequired",
                "Required value: name or generateName is required",
            )
        if not isinstance(name, str) or not isinstance(generate, str):
            raise bad_request("metadata.name and metadata.generateName must be strings")
        obj: JSON = {**body, "kind": rtype.kind, "apiVersion": "v1"}
        if resource == "pods":
            status = dict(obj.get("status") or {})
            status.setdefault("phase", "Pending")
            obj["status"] = status
        with self._lock:
            objects = self._objects[resource]
            if not name:
                name = _generated_name(generate)
                while (namespace, name) in objects:
                    name = _generated_name(generate)
            if (namespace, name) in objects:
                raise already_exists(resource, name)
            meta.update(name=name, uid=str(uuid.uuid4()), creationTimestamp=rfc3339())
            if rtype.namespaced:
                meta["namespace"] = namespace
            else:
                meta.pop("namespace", None)
            meta.pop("resourceVersion", None)
            obj["metadata"] = meta
            return self._commit(resource, "ADDED", obj, None)

    def update(
        self,
        resource: str,
        namespace: str,
        name: str,
        compute: Callable[[JSON], JSON],
        *,
        scope: Scope,
        check_preconditions: bool = True,
        force: bool = False,
    ) -> JSON:
        """Replace an object with what ``compute`` makes of the stored one.

        ``scope`` says which part the caller may change: "status" keeps all
        but the status, "main" keeps the status (a pod's status is only
        written through its status subresource), "all" takes everything.
        Unless ``force``, an update that changes nothing is not a write: the
        object keeps its resourceVersion and no watch event is sent, as on a
        real server.
        """
        rtype = RESOURCES[resource]
        with self._lock:
            old = self._objects[resource].get((namespace, name))
            if old is None:
                raise not_found(resource, name)
            candidate = compute(old)
            cand_meta = candidate.get("metadata") or {}
            if check_preconditions:
                self._check_preconditions(resource, old, cand_meta)
            if scope == "status":
                new = {**old}
                if "status" in candidate:
                    new["status"] = candidate["status"]
                else:
                    new.pop("status", None)
            else:
                new = {**candidate, "kind": rtype.kind, "apiVersion": "v1"}
                if scope == "main" and rtype.has_status:
                    if "status" in old:
                        new["status"] = old["status"]
                    else:
                        new.pop("status", None)
                meta = dict(cand_meta)
                for kept in ("name", "namespace", "uid", "creationTimestamp", "resourceVersion"):
                    if kept in old["metadata"]:
                        meta[kept] = old["metadata"][kept]
                # Set only by a delete, never by a client's update, as on a
                # real server (the test facade may set them: force).
                for kept in ("deletionTimestamp", "deletionGracePeriodSeconds"):
                    if force:
                        continue
                    if kept in old["metadata"]:
                        meta[kept] = old["metadata"][kept]
                    else:
                        meta.pop(kept, None)
                new["metadata"] = meta
            if not force and new == old:
                return old
            if not force and _removable(new):
                # The last finalizer of a deleted object is gone: now it goes.
                return self._commit(resource, "DELETED", new, old)
            return self._commit(resource, "MODIFIED", new, old)

    @staticmethod
    def _check_preconditions(resource: str, old: JSON, cand_meta: JSON) -> None:
        name = old["metadata"]["name"]
        uid = cand_meta.get("uid")
        if uid and uid != old["metadata"]["uid"]:
            raise conflict(
                resource,
                name,
                f"Precondition failed: UID in precondition: {uid}, "
                f"UID in object meta: {old['metadata']['uid']}",
            )
        rv = cand_meta.get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise conflict(resource, name, STALE_OBJECT)

    def delete(
        self,
        resource: str,
        namespace: str,
        name: str,
        preconditions: JSON | None = None,
        grace_period: int | None = None,
        *,
        immediate: bool = False,
    ) -> tuple[JSON, bool]:
        """Delete an object, checking ``preconditions`` (uid, resourceVersion) first.

        Returns the object and whether it is gone. A pod bound to a node and
        not finished is deleted gracefully, as on a real server: it gets a
        ``deletionTimestamp`` ``grace_period`` seconds ahead (its
        ``terminationGracePeriodSeconds`` when None, 30 by default) and stays
        until its kubelet, having stopped it, deletes it with a grace period
        of 0. An object with finalizers stays, marked, until the last one is
        removed. A second delete may shorten the grace period, never lengthen it.
        ``immediate`` removes the object whatever it holds (a direct write).
        """
        with self._lock:
            old = self._objects[resource].get((namespace, name))
            if old is None:
                raise not_found(resource, name)
            if preconditions:
                self._check_preconditions(resource, old, preconditions)
            if immediate:
                return self._commit(resource, "DELETED", old, old), True
            grace = _grace_period(resource, old, grace_period)
            meta = old["metadata"]
            current = meta.get("deletionGracePeriodSeconds")
            if meta.get("deletionTimestamp") and current is not None and grace >= current:
                return old, False
            if grace == 0 and not meta.get("finalizers"):
                return self._commit(resource, "DELETED", old, old), True
            now = time.time()
            marked = {
                **old,
                "metadata": {
                    **meta,
                    "deletionTimestamp": rfc3339(now + grace),
                    "deletionGracePeriodSeconds": grace,
                },
            }
            return self._commit(resource, "MODIFIED", marked, old), False

    # -- reads ----------------------------------------------------------------

    def get(self, resource: str, namespace: str, name: str) -> JSON | None:
        """One object as stored (not a copy), or None."""
        with self._lock:
            return self._objects[resource].get((namespace, name))

    def select(self, resource: str, selector: Selector) -> tuple[int, list[JSON]]:
        """Matching objects in key order (namespace, then name), and the list's RV."""
        with self._lock:
            objects = self._objects[resource]
            items = [objects[key] for key in sorted(objects) if selector.matches(objects[key])]
            return self._rv, items

    def namespaces(self) -> set[str]:
        """Every namespace some object is in."""
        with self._lock:
            return {ns for objects in self._objects.values() for ns, _ in objects}

    # -- watches --------------------------------------------------------------

    def open_watch(
        self,
        resource: str,
        selector: Selector,
        resource_version: str,
        *,
        bookmarks: bool,
        initial_state: bool,
        conn: socket.socket | None,
    ) -> tuple[Watch, list[tuple[str, JSON]]]:
        """Register a watch; return it with the events to send before live ones.

        Without a resourceVersion (or with "0", or when initial state is asked
        for) the watch opens with a synthetic ADDED per current object;
        otherwise it replays the history after that version, or fails with
        410 Expired when the history no longer reaches back that far.
        """
        start: int | None = None
        if resource_version not in ("", "0"):
            try:
                start = int(resource_version)
            except ValueError:
                raise bad_request(f"invalid resource version: {resource_version!r}") from None
        with self._lock:
            watch = Watch(
                resource,
                selector,
                after_rv=max(self._rv, start or 0),
                bookmarks=bookmarks,
                conn=conn,
                progress=max(self._rv, start or 0),
            )
            events: list[tuple[str, JSON]] = []
            if start is None or initial_state:
                objects = self._objects[resource]
                events = [
                    ("ADDED", objects[key])
                    for key in sorted(objects)
                    if selector.matches(objects[key])
                ]
            else:
                if start < self._compacted:
                    raise expired(f"too old resource version: {start} ({self._compacted})")
                replay = Watch(resource, selector, after_rv=start, bookmarks=False, conn=None)
                for change in self._history:
                    event = replay.render(change)
                    if event is not None:
                        events.append(event)
            self._watches.add(watch)
            return watch, events

    @property
    def open_watches(self) -> int:
        """How many watches are open."""
        with self._lock:
            return len(self._watches)

    def close_watch(self, watch: Watch) -> None:
        """Stop delivering to ``watch`` and mark it closed."""
        with self._lock:
            self._watches.discard(watch)
        watch.closed.set()

    def signal_watches(self, message: str) -> list[Watch]:
        """Put ``message`` (a bookmark, a drop or stop) on every open watch; returns them."""
        with self._lock:
            watches = list(self._watches)
        for watch in watches:
            watch.queue.put(message)
        return watches

    def compact(self) -> int:
        """Forget the history up to now; return the compaction point."""
        with self._lock:
            self._history.clear()
            self._compacted = self._rv
            return self._rv
