"""A fake Kubernetes API server that speaks real HTTP/1.1 JSON.

The official ``kubernetes`` Python client talks to it unchanged, so tests and
the lab exercise the agent's real client code: list, get, create, update,
patch and delete of pods, events and services, watches with resourceVersion
replay, bookmarks and 410 Expired, field and label selectors, TokenReview
and SubjectAccessReview, discovery, ``/version`` and health endpoints.

It is served with the standard library's ``ThreadingHTTPServer`` rather
than uvicorn and starlette: tests drive it from their own thread through
plain locked hooks, with no event loop to bridge into; each watch is a
blocking loop on its own connection thread, which is simple and plenty for
the handful of watches a test opens; the chunked framing is written by hand,
so what goes on the wire is exactly what this module says; and dropping a
watch abruptly is a socket shutdown. It starts in milliseconds in-process.

Behaviour copied from a real server, because clients depend on it:

* one resourceVersion counter shared by all kinds; list items carry no
  ``kind``/``apiVersion`` while single objects and watch events do;
* a write that changes nothing is not a write (no new resourceVersion, no
  event); a pod's status only changes through ``/status``, and ``/status``
  changes nothing else;
* a watch without a resourceVersion (or "0") starts with a synthetic ADDED
  per object; with one, it replays the later history, or sends one ERROR
  event carrying a 410 Expired Status when the history was compacted past
  it; an update that moves an object out of a watch's selection is a
  DELETED, one that moves it in an ADDED;
* errors are ``Status`` objects with the server's reasons and messages.

It also serves what kubectl needs to work against it as against a cluster:
server-side Tables (``tables``), the OpenAPI v3 documents and strict field
validation (``openapi``), graceful deletion of pods (``--graceful-delete``; otherwise
every delete is immediate, which suits runs without a kubelet),
``pods/log``, ``pods/exec`` and ``pods/portforward`` through the node's
kubelet (``kubelet``), and a clear refusal for what the lab lacks
(``unserved``).

Known differences: objects are validated only against their schemas' field
names (``fieldValidation``), namespaces exist implicitly, a ``continue``
token pages through the current state rather than a snapshot, strategic
merge patch knows the list merge keys of pods, events and services only,
and ``timeoutSeconds`` may be a fraction (the client only sends whole
seconds; raw-HTTP tests use fractions to stay fast).

Run as a process with ``python -m lab.apiserver --port N``; it prints
its URL on the first line of stdout once it accepts connections.

Owns the HTTP side (routes, authentication, watch streams) and the
``FakeApiServer`` facade tests drive. Imports the standard library and the
rest of ``lab.apiserver`` only; never the agent or the kubelet's code (it
reaches the kubelet over HTTP).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import copy
import hmac
import json
import logging
import queue
import signal
import socket
import socketserver
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, Final, NamedTuple, TypeAlias, cast
from urllib.parse import parse_qs, unquote, urlsplit

from lab.apiserver import openapi, tables
from lab.apiserver.kubelet import KubeletLink
from lab.apiserver.patch import apply_patch, merge_patch
from lab.apiserver.select import Selector, parse_selector
from lab.apiserver.status import (
    ApiStatusError,
    bad_request,
    internal,
    invalid,
    method_not_allowed,
    not_found,
    route_not_found,
    success_status,
    too_large,
    unauthorized,
    unprocessable,
)
from lab.apiserver.store import (
    BOOKMARK,
    DROP,
    RESOURCES,
    STOP,
    CommittedChange,
    Scope,
    Store,
    Watch,
    resolve_resource,
)
from lab.apiserver.unserved import (
    SERVICE_WARNING,
    UNSERVED_CORE,
    UNSERVED_GROUPS,
    unserved,
    unserved_discovery_groups,
    unserved_group_resources,
)

__all__ = [
    "ApiStatusError",
    "Authorizer",
    "FakeApiServer",
    "RequestRecord",
    "main",
]

JSON = dict[str, Any]
# (user, verb, resource, subresource, namespace); "*" matches anything.
AllowRule: TypeAlias = tuple[str, str, str, str, str]
AuthorizeFn: TypeAlias = Callable[[JSON], bool | tuple[bool, str]]
Authorizer: TypeAlias = AuthorizeFn | Iterable[AllowRule] | None

_log = logging.getLogger(__name__)

MAX_BODY_BYTES: Final = 4 * 1024 * 1024
# Past this a body is not worth draining to keep the connection: just close it.
_MAX_DRAIN_BYTES: Final = 64 * 1024 * 1024
DEFAULT_AUDIENCES: Final = ("https://kubernetes.default.svc.cluster.local",)
DEFAULT_NAMESPACES: Final = ("default", "kube-node-lease", "kube-public", "kube-system")
VERSION_INFO: Final[Mapping[str, str]] = {
    "major": "1",
    "minor": "37",
    "gitVersion": "v1.37.2-lab",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-08-13T00:00:00Z",
    "goVersion": "go1.22.5",
    "compiler": "gc",
    "platform": "linux/amd64",
}
# Served without a bearer token even when one is required, as a cluster's
# anonymous access usually allows.
_PUBLIC_PATHS: Final = frozenset({"/healthz", "/readyz", "/livez", "/version"})
_AUTH_GROUPS: Final[Mapping[str, str]] = {
    "authentication.k8s.io": "tokenreviews",
    "authorization.k8s.io": "subjectaccessreviews",
}


class RequestRecord(NamedTuple):
    """One request the server received, kept for tests to assert on."""

    method: str
    path: str
    query: dict[str, str]
    watch: bool
    timestamp: float


def _parse_bool(value: str | None) -> bool:
    return value in ("1", "t", "T", "true", "TRUE", "True")


def _list_item(obj: JSON) -> JSON:
    return {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}


def _encode_continue(rv: int, namespace: str, name: str) -> str:
    raw = json.dumps({"rv": rv, "start": [namespace, name]}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[int, tuple[str, str]]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        start = data["start"]
        return int(data["rv"]), (str(start[0]), str(start[1]))
    except (ValueError, KeyError, IndexError, TypeError, binascii.Error):
        raise bad_request(f"continue key is not valid: {token!r}") from None


def _rule_matches(rule: AllowRule, attrs: AllowRule) -> bool:
    return all(want in ("*", got) for want, got in zip(rule, attrs, strict=True))


def _namespace_object(name: str) -> JSON:
    return {
        "kind": "Namespace",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"namespace/{name}")),
            "creationTimestamp": "2024-01-01T00:00:00Z",
            "labels": {"kubernetes.io/metadata.name": name},
        },
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: FakeApiServer) -> None:
        self.app = app
        self.connections: dict[socket.socket, threading.Thread] = {}
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can stall on DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        # Tracked so stop() can close every connection, idle keep-alives included.
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name="fake-apiserver-conn",
            daemon=True,
        )
        with self.connections_lock:
            self.connections[request] = thread
        thread.start()

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.pop(request, None)
        super().shutdown_request(request)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Idle keep-alive connections are closed after this; a watch never reads,
    # so it only bounds a single blocked write to a client that stopped reading.
    timeout = 60
    # Set once a watch has sent its headers: an error can no longer be a response.
    _streaming = False
    # A warning for the client (kubectl prints it), sent with the next response.
    _warning = ""
    # A watch that answers with Tables sends the columns with its first row only.
    _table_columns_sent = False

    @property
    def app(self) -> FakeApiServer:
        return cast(_Server, self.server).app

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as separate writes; with Nagle on, the body
        # waits for the client's delayed ACK (~40 ms a request).
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # -- plumbing -------------------------------------------------------------

    def _handle(self, method: str) -> None:
        self._streaming = False
        self._warning = ""
        self._table_columns_sent = False
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        path = url.path
        watch = method == "GET" and _parse_bool(query.get("watch"))
        app = self.app
        app._record(RequestRecord(method, path, query, watch, time.time()))
        try:
            body = self._read_body(app.max_body_bytes)
            if path.rstrip("/") not in _PUBLIC_PATHS:
                app._authenticate(self.headers.get("Authorization"))
            self._route(method, path, query, watch, body)
        except ApiStatusError as err:
            self._send_json(err.code, err.status())
        except OSError:
            self.close_connection = True
        except Exception:
            _log.exception("fake apiserver failed on %s %s", method, self.path)
            self.close_connection = True
            if not self._streaming:
                self._send_json(500, internal("internal error in the fake API server").status())

    def _read_body(self, limit: int) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limit)
        header = self.headers.get("Content-Length")
        if header is None:
            return None
        try:
            length = int(header)
            if length < 0:
                raise ValueError(header)
        except ValueError:
            self.close_connection = True
            raise bad_request(f"invalid Content-Length {header!r}") from None
        if length > limit:
            self._discard(length)
            raise too_large(limit)
        return self.rfile.read(length)

    def _discard(self, length: int) -> None:
        # Reading the refused body lets the client see the 413 instead of a reset.
        if length > _MAX_DRAIN_BYTES:
            self.close_connection = True
            return
        while length > 0:
            got = self.rfile.read(min(length, 1 << 16))
            if not got:
                self.close_connection = True
                return
            length -= len(got)

    def _read_chunked(self, limit: int) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                raise bad_request("malformed chunked request body") from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            total += size
            if total > limit:
                self.close_connection = True
                raise too_large(limit)
            parts.append(self.rfile.read(size))
            self.rfile.readline(16)

    def _send_bytes(self, code: int, data: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        if self._warning:
            self.send_header("Warning", f'299 - "{self._warning}"')
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _send_json(self, code: int, body: JSON) -> None:
        self._send_bytes(code, json.dumps(body, separators=(",", ":")).encode(), "application/json")

    @staticmethod
    def _json_body(body: bytes | None) -> Any:
        if not body:
            raise bad_request("the request body is empty")
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError) as err:
            raise bad_request(f"the body of the request is not valid JSON: {err}") from None

    def _object_body(self, body: bytes | None, kind: str, namespace: str | None) -> JSON:
        obj = self._json_body(body)
        if not isinstance(obj, dict):
            raise bad_request(f"the body must be a JSON object of kind {kind}")
        if obj.get("kind") not in (None, "", kind):
            raise bad_request(
                f"the kind of the object ({obj['kind']}) does not match the kind on the URL "
                f"({kind})"
            )
        meta = obj.get("metadata")
        if meta is None:
            obj["metadata"] = meta = {}
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        body_ns = meta.get("namespace")
        if namespace is not None and body_ns not in (None, "", namespace):
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )
        return obj

    # -- routing --------------------------------------------------------------

    def _route(
        self, method: str, path: str, query: dict[str, str], watch: bool, body: bytes | None
    ) -> None:
        stripped = path.strip("/")
        parts = [unquote(p) for p in stripped.split("/")] if stripped else []
        app = self.app
        match parts:
            case ["healthz" | "readyz" | "livez"]:
                self._only(method, "GET")
                self._send_bytes(200, b"ok", "text/plain; charset=utf-8")
            case ["version"]:
                self._only(method, "GET")
                self._send_json(200, dict(VERSION_INFO))
            case ["api"]:
                self._only(method, "GET")
                self._send_json(200, app._api_versions())
            case ["api", "v1"]:
                self._only(method, "GET")
                self._send_json(200, _core_resources())
            case ["apis"]:
                self._only(method, "GET")
                self._send_json(200, _api_groups())
            case ["apis", group] if group in _AUTH_GROUPS:
                self._only(method, "GET")
                self._send_json(200, _api_group(group))
            case ["apis", group, "v1"] if group in _AUTH_GROUPS:
                self._only(method, "GET")
                self._send_json(200, _group_resources(group))
            case ["apis", "authentication.k8s.io", "v1", "tokenreviews"]:
                self._only(method, "POST")
                self._send_json(201, app._token_review(self._review_body(body, "TokenReview")))
            case ["apis", "authorization.k8s.io", "v1", "subjectaccessreviews"]:
                self._only(method, "POST")
                review = self._review_body(body, "SubjectAccessReview")
                self._send_json(201, app._access_review(review))
            case ["openapi", "v3"]:
                self._only(method, "GET")
                self._send_json(200, self._openapi(openapi.discovery_document))
            case ["openapi", "v3", "api", "v1"]:
                self._only(method, "GET")
                self._send_bytes(200, self._openapi(openapi.core_v1_document), "application/json")
            case ["openapi", "v3", "apis", group, version] if UNSERVED_GROUPS.get(group) == version:
                self._only(method, "GET")
                self._send_bytes(200, openapi.group_document(group, version), "application/json")
            case ["openapi", "v2"]:
                raise ApiStatusError(
                    404,
                    "NotFound",
                    "the stand-in lab serves its OpenAPI documents as v3 only (/openapi/v3)",
                    {},
                )
            case ["apis", group] if group in UNSERVED_GROUPS:
                self._only(method, "GET")
                self._send_json(200, _api_group(group, UNSERVED_GROUPS[group]))
            case ["apis", group, version] if UNSERVED_GROUPS.get(group) == version:
                self._only(method, "GET")
                self._send_json(200, unserved_group_resources(group, version))
            case ["apis", group, version, *rest] if UNSERVED_GROUPS.get(group) == version:
                raise unserved(_named_resource(rest), group)
            case ["api", "v1", "namespaces"]:
                if method == "POST":
                    self._send_json(201, app._create_namespace(self._json_body(body)))
                    return
                self._only(method, "GET")
                if watch:
                    raise method_not_allowed()
                if self._wants_table():
                    items = app._namespace_list(query)["items"]
                    self._send_json(200, self._table("namespaces", items, query))
                else:
                    self._send_json(200, app._namespace_list(query))
            case ["api", "v1", "namespaces", namespace]:
                self._only(method, "GET")
                obj = _namespace_object(namespace)
                self._send_json(
                    200, self._table("namespaces", [obj], query) if self._wants_table() else obj
                )
            case ["api", "v1", resource] if resource in RESOURCES:
                if method == "POST" and not RESOURCES[resource].namespaced:
                    obj = self._object_body(body, RESOURCES[resource].kind, None)
                    self._validate(RESOURCES[resource].kind, obj, query)
                    self._send_json(201, app._store.create(resource, "", obj))
                    return
                self._only(method, "GET")
                self._collection_get(resource, None, query, watch)
            case ["api", "v1", resource, name] if (
                resource in RESOURCES and not RESOURCES[resource].namespaced
            ):
                self._item(method, resource, "", name, body, "main", query)
            case ["api", "v1", resource, name, "status"] if (
                resource in RESOURCES
                and not RESOURCES[resource].namespaced
                and RESOURCES[resource].has_status
            ):
                if method == "DELETE":
                    raise method_not_allowed()
                self._item(method, resource, "", name, body, "status", query)
            case ["api", "v1", "namespaces", namespace, resource] if (
                resource in RESOURCES and RESOURCES[resource].namespaced
            ):
                if method == "GET":
                    self._collection_get(resource, namespace, query, watch)
                elif method == "POST":
                    obj = self._object_body(body, RESOURCES[resource].kind, namespace)
                    self._validate(RESOURCES[resource].kind, obj, query)
                    if resource == "services":
                        self._warning = SERVICE_WARNING
                    self._send_json(201, app._store.create(resource, namespace, obj))
                else:
                    raise method_not_allowed()
            case ["api", "v1", "namespaces", namespace, resource, name] if (
                resource in RESOURCES and RESOURCES[resource].namespaced
            ):
                self._item(method, resource, namespace, name, body, "main", query)
            case ["api", "v1", "namespaces", namespace, resource, name, "status"] if (
                resource in RESOURCES and RESOURCES[resource].has_status
            ):
                if method == "DELETE":
                    raise method_not_allowed()
                self._item(method, resource, namespace, name, body, "status", query)
            case ["api", "v1", "namespaces", namespace, "pods", name, "log"]:
                self._only(method, "GET")
                app._kubelet.stream_log(self, app._pod_or_404(namespace, name), query)
            case [
                "api",
                "v1",
                "namespaces",
                namespace,
                "pods",
                name,
                streamed,
            ] if streamed in ("exec", "portforward"):
                if method not in ("GET", "POST"):
                    raise method_not_allowed()
                app._kubelet.stream(self, streamed, app._pod_or_404(namespace, name), self.path)
            case ["api", "v1", "namespaces", namespace, "pods", name, "attach"]:
                raise bad_request(
                    "the stand-in lab does not attach to a container's own streams (kubectl "
                    "attach, kubectl run -it); use kubectl exec, or the real node (lab up --real)"
                )
            case ["api", "v1", "namespaces", _, resource, *_] if resource in UNSERVED_CORE:
                raise unserved(resource, "")
            case ["api", "v1", resource, *_] if resource in UNSERVED_CORE:
                raise unserved(resource, "")
            case _:
                raise route_not_found()

    @staticmethod
    def _only(method: str, allowed: str) -> None:
        if method != allowed:
            raise method_not_allowed()

    @staticmethod
    def _openapi(build: Callable[[], Any]) -> Any:
        try:
            return build()
        except openapi.SchemasMissing as exc:
            raise ApiStatusError(404, "NotFound", str(exc), {}) from None

    def _wants_table(self) -> bool:
        return tables.wants_table(self.headers.get("Accept") or "")

    def _table(
        self,
        resource: str,
        items: Sequence[JSON],
        query: dict[str, str],
        *,
        list_meta: JSON | None = None,
        headers: bool = True,
    ) -> JSON:
        include = query.get("includeObject") or "Metadata"
        if include not in ("None", "Metadata", "Object"):
            raise bad_request(f"includeObject must be None, Metadata or Object, not {include!r}")
        return tables.table(
            resource, items, include_object=include, headers=headers, list_meta=list_meta
        )

    def _validate(self, kind: str, obj: JSON, query: dict[str, str]) -> None:
        """fieldValidation=Strict (what kubectl sends): an unknown field is a 400 naming it."""
        mode = query.get("fieldValidation", "")
        if mode not in ("", "Ignore", "Warn", "Strict"):
            raise bad_request(f"fieldValidation must be Ignore, Warn or Strict, not {mode!r}")
        if mode in ("", "Ignore"):
            return
        try:
            unknown = openapi.unknown_fields(kind, obj)
        except openapi.SchemasMissing as exc:
            raise bad_request(str(exc)) from None
        if not unknown:
            return
        listed = ", ".join(f'unknown field "{field}"' for field in unknown)
        if mode == "Warn":
            self._warning = listed
            return
        raise bad_request(
            f'{kind} in version "v1" cannot be handled as a {kind}: strict decoding error: {listed}'
        )

    def _review_body(self, body: bytes | None, kind: str) -> JSON:
        review = self._json_body(body)
        if not isinstance(review, dict):
            raise bad_request(f"the body must be a {kind} object")
        return review

    def _collection_get(
        self, resource: str, namespace: str | None, query: dict[str, str], watch: bool
    ) -> None:
        selector = parse_selector(
            resource, namespace, query.get("fieldSelector", ""), query.get("labelSelector", "")
        )
        if watch:
            self._serve_watch(resource, selector, query)
            return
        rv, items = self.app._store.select(resource, selector)
        meta: JSON = {}
        token = query.get("continue", "")
        if token:
            rv, start = _decode_continue(token)
            items = [
                obj
                for obj in items
                if (obj["metadata"]["namespace"], obj["metadata"]["name"]) > start
            ]
        limit = int(query["limit"]) if query.get("limit", "").isdigit() else 0
        if 0 < limit < len(items):
            last = items[limit - 1]["metadata"]
            meta["continue"] = _encode_continue(rv, last["namespace"], last["name"])
            if not selector.filters:
                meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        meta["resourceVersion"] = str(rv)
        if self._wants_table():
            self._send_json(200, self._table(resource, items, query, list_meta=meta))
            return
        self._send_json(
            200,
            {
                "kind": RESOURCES[resource].list_kind,
                "apiVersion": "v1",
                "metadata": meta,
                "items": [_list_item(obj) for obj in items],
            },
        )

    def _item(
        self,
        method: str,
        resource: str,
        namespace: str,
        name: str,
        body: bytes | None,
        scope: Scope,
        query: dict[str, str] | None = None,
    ) -> None:
        store = self.app._store
        kind = RESOURCES[resource].kind
        query = query or {}

        def checked(obj: JSON) -> JSON:
            self._validate(kind, obj, query)
            return obj

        if method == "GET":
            obj = store.get(resource, namespace, name)
            if obj is None:
                raise not_found(resource, name)
            self._send_json(
                200, self._table(resource, [obj], query) if self._wants_table() else obj
            )
        elif method == "PUT":
            new = self._object_body(body, kind, namespace or None)
            body_name = new["metadata"].get("name")
            if body_name != name:
                raise bad_request(
                    f"the name of the object ({body_name}) does not match the name on the URL "
                    f"({name})"
                )
            self._send_json(
                200,
                store.update(resource, namespace, name, lambda _old: checked(new), scope=scope),
            )
        elif method == "PATCH":
            patch = self._json_body(body)
            content_type = self.headers.get("Content-Type") or ""
            updated = store.update(
                resource,
                namespace,
                name,
                lambda old: checked(apply_patch(resource, old, patch, content_type)),
                scope=scope,
            )
            self._send_json(200, updated)
        elif method == "DELETE":
            options = self._json_body(body) if body else {}
            if not isinstance(options, dict):
                raise bad_request("the body of a delete must be a DeleteOptions object")
            preconditions = options.get("preconditions")
            grace = _grace_option(options, query)
            deleted, gone = store.delete(
                resource,
                namespace,
                name,
                preconditions if isinstance(preconditions, dict) else None,
                grace,
                immediate=not self.app.graceful_delete,
            )
            if resource == "events" and gone:
                uid = deleted["metadata"]["uid"]
                self._send_json(200, success_status(resource, name, uid))
            else:
                self._send_json(200, deleted)
        else:
            raise method_not_allowed()

    # -- watch ----------------------------------------------------------------

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _event(
        self, kind: str, obj: JSON, resource: str = "", query: dict[str, str] | None = None
    ) -> None:
        if query is not None and kind in ("ADDED", "MODIFIED", "DELETED"):
            obj = self._table(resource, [obj], query, headers=not self._table_columns_sent)
            self._table_columns_sent = True
        line = json.dumps({"type": kind, "object": obj}, separators=(",", ":"))
        self._chunk(line.encode() + b"\n")

    def _start_stream(self) -> None:
        self._streaming = True
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")

    def _bookmark(self, watch: Watch, *, initial_events_end: bool = False) -> None:
        meta: JSON = {"resourceVersion": str(watch.progress)}
        if initial_events_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        self._event(
            "BOOKMARK",
            {"kind": RESOURCES[watch.resource].kind, "apiVersion": "v1", "metadata": meta},
        )

    def _serve_watch(self, resource: str, selector: Selector, query: dict[str, str]) -> None:
        app = self.app
        timeout_raw = query.get("timeoutSeconds", "")
        try:
            timeout = float(timeout_raw) if timeout_raw else None
        except ValueError:
            raise bad_request(f"invalid timeoutSeconds {timeout_raw!r}") from None
        deadline = time.monotonic() + timeout if timeout is not None and timeout > 0 else None
        bookmarks = _parse_bool(query.get("allowWatchBookmarks"))
        initial = _parse_bool(query.get("sendInitialEvents"))
        if initial and query.get("resourceVersionMatch") != "NotOlderThan":
            raise unprocessable(
                "resourceVersionMatch: Forbidden: sendInitialEvents requires setting "
                "resourceVersionMatch to NotOlderThan"
            )
        try:
            watch, events = app._store.open_watch(
                resource,
                selector,
                query.get("resourceVersion", ""),
                bookmarks=bookmarks,
                initial_state=initial,
                conn=self.connection,
            )
        except ApiStatusError as err:
            if err.code != 410:
                raise
            # A real server reports an expired watch inside a 200 stream.
            self._start_stream()
            self._event("ERROR", err.status())
            self._end_stream()
            return
        # kubectl get -w asks for its rows as Tables, like its first list.
        as_table = query if self._wants_table() else None
        try:
            self._start_stream()
            for kind, obj in events:
                self._event(kind, obj, resource, as_table)
            if initial:
                self._bookmark(watch, initial_events_end=True)
            interval = app.bookmark_interval if bookmarks else 0.0
            if self._pump(watch, deadline, interval, as_table):
                self._end_stream()
            else:
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            self.close_connection = True
        finally:
            app._store.close_watch(watch)

    def _pump(
        self,
        watch: Watch,
        deadline: float | None,
        interval: float,
        as_table: dict[str, str] | None = None,
    ) -> bool:
        """Stream live changes; True when the stream should end cleanly."""
        next_bookmark = time.monotonic() + interval if interval > 0 else None
        while True:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return True
            if next_bookmark is not None and now >= next_bookmark:
                self._bookmark(watch)
                next_bookmark = now + interval
                continue
            waits = [t - now for t in (deadline, next_bookmark) if t is not None]
            try:
                item = watch.queue.get(timeout=min(waits) if waits else None)
            except queue.Empty:
                continue
            if isinstance(item, CommittedChange):
                watch.progress = max(watch.progress, item.rv)
                event = watch.render(item)
                if event is not None:
                    self._event(event[0], event[1], watch.resource, as_table)
            elif item == BOOKMARK:
                if watch.bookmarks:
                    self._bookmark(watch)
            elif item in (DROP, STOP):
                return False


def _grace_option(options: JSON, query: dict[str, str]) -> int | None:
    raw = options.get("gracePeriodSeconds", query.get("gracePeriodSeconds"))
    if raw is None or raw == "":
        return None
    try:
        grace = int(raw)
    except (TypeError, ValueError):
        raise bad_request(f"gracePeriodSeconds must be an integer, not {raw!r}") from None
    # A negative grace period means "the default", as on a real server.
    return grace if grace >= 0 else None


def _named_resource(rest: Sequence[str]) -> str:
    # .../namespaces/<ns>/<resource>[/<name>] or .../<resource>[/<name>]
    if len(rest) >= 3 and rest[0] == "namespaces":
        return rest[2]
    return rest[0] if rest else ""


def _core_resources() -> JSON:
    resources: list[JSON] = []
    verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
    for rtype in RESOURCES.values():
        resources.append(
            {
                "name": rtype.name,
                "singularName": rtype.kind.lower(),
                "namespaced": rtype.namespaced,
                "kind": rtype.kind,
                "verbs": verbs,
                "shortNames": list(rtype.short_names),
            }
        )
        if rtype.has_status:
            resources.append(
                {
                    "name": f"{rtype.name}/status",
                    "singularName": "",
                    "namespaced": rtype.namespaced,
                    "kind": rtype.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
    resources.append(
        {
            "name": "namespaces",
            "singularName": "namespace",
            "namespaced": False,
            "kind": "Namespace",
            "verbs": ["create", "get", "list"],
            "shortNames": ["ns"],
        }
    )
    resources.extend(unserved_group_resources("", "v1")["resources"])
    return {"kind": "APIResourceList", "groupVersion": "v1", "resources": resources}


def _api_group(group: str, version_name: str = "v1") -> JSON:
    version = {"groupVersion": f"{group}/{version_name}", "version": version_name}
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": [version],
        "preferredVersion": version,
    }


def _api_groups() -> JSON:
    groups = [_api_group(group) for group in _AUTH_GROUPS]
    groups += [_api_group(group, version) for group, version in unserved_discovery_groups()]
    for group in groups:
        del group["kind"], group["apiVersion"]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def _group_resources(group: str) -> JSON:
    name = _AUTH_GROUPS[group]
    kind = {"tokenreviews": "TokenReview", "subjectaccessreviews": "SubjectAccessReview"}[name]
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/v1",
        "resources": [
            {
                "name": name,
                "singularName": kind.lower(),
                "namespaced": False,
                "kind": kind,
                "verbs": ["create"],
            }
        ],
    }


class FakeApiServer:
    """An in-memory API server on a real socket.

    Every public method is safe to call from any thread while the server
    runs. Objects handed in are copied, and objects handed out are copies.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        bookmark_interval: float = 1.0,
        max_history: int = 10_000,
        tokens: Mapping[str, Mapping[str, Any] | None] | None = None,
        authorizer: Authorizer = None,
        required_token: str | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        kubelet_token: str | None = None,
        graceful_delete: bool = False,
    ) -> None:
        """Configure; nothing listens until :meth:`start`.

        ``bookmark_interval`` is how often a watch that allows bookmarks gets
        one (0 turns periodic bookmarks off). ``max_history`` bounds the change
        history watches replay from; older resourceVersions then get 410.
        ``tokens`` answers TokenReviews: token -> user info (``username``,
        ``uid``, ``groups``, ``extra``, optional ``audiences``) or None for a
        token that does not authenticate. ``authorizer`` answers
        SubjectAccessReviews (see :meth:`set_authorizer`). ``required_token``
        makes every API request need ``Authorization: Bearer <it>``.
        ``kubelet_token`` is what the node's kubelet demands for logs, exec and
        port-forward (without it those requests are refused).
        ``graceful_delete`` deletes pods as a cluster does (Terminating until
        their kubelet confirms, finalizers kept); without it every delete is
        immediate, which suits tests that run no kubelet.
        """
        self.host = host
        self._port = port
        self.bookmark_interval = bookmark_interval
        self.required_token = required_token
        self.max_body_bytes = max_body_bytes
        self._store = Store(max_history)
        self._kubelet = KubeletLink(self._store, kubelet_token)
        self.graceful_delete = graceful_delete
        self._tokens: dict[str, Mapping[str, Any] | None] = dict(tokens or {})
        self._authorize: Callable[[JSON], tuple[bool, str]] = _allow_all
        self.set_authorizer(authorizer)
        self._log_lock = threading.Lock()
        self._requests: list[RequestRecord] = []
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> FakeApiServer:
        """Serve on a thread of its own; returns once the port is bound."""
        if self._httpd is not None:
            raise RuntimeError("the fake API server is already started")
        server_class = _Server6 if ":" in self.host else _Server
        self._httpd = server_class((self.host, self._port), self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-apiserver",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every connection, open watches included."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        self._store.signal_watches(STOP)
        with httpd.connections_lock:
            connections = dict(httpd.connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        if self._thread is not None:
            self._thread.join()
        deadline = time.monotonic() + 5
        for thread in connections.values():
            thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> FakeApiServer:
        return self.start() if self._httpd is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (known once started, also when 0 was asked for)."""
        if self._httpd is None:
            raise RuntimeError("the fake API server is not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """The base URL clients use."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # -- objects --------------------------------------------------------------

    @property
    def resource_version(self) -> str:
        """The newest resourceVersion handed out (all kinds share one counter)."""
        return str(self._store.resource_version)

    def add(self, kind: str, obj: Mapping[str, Any]) -> JSON:
        """Create an object as a POST would (uid, timestamps, default phase)."""
        resource = resolve_resource(kind)
        body = copy.deepcopy(dict(obj))
        namespace = (body.get("metadata") or {}).get("namespace") or "default"
        return copy.deepcopy(self._store.create(resource, namespace, body))

    def update(self, kind: str, obj: Mapping[str, Any]) -> JSON:
        """Replace an object, status included; always a new resourceVersion."""
        resource = resolve_resource(kind)
        body = copy.deepcopy(dict(obj))
        meta = body.get("metadata") or {}
        updated = self._store.update(
            resource,
            meta.get("namespace") or "default",
            meta.get("name") or "",
            lambda _old: body,
            scope="all",
            check_preconditions=False,
            force=True,
        )
        return copy.deepcopy(updated)

    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> JSON:
        """JSON-merge ``status`` into a pod's status (None deletes a key)."""
        patch = {"status": copy.deepcopy(dict(status))}
        updated = self._store.update(
            "pods",
            namespace,
            name,
            lambda old: cast(JSON, merge_patch(old, patch)),
            scope="status",
            check_preconditions=False,
            force=True,
        )
        return copy.deepcopy(updated)

    def delete(self, kind: str, namespace: str, name: str) -> JSON:
        """Delete an object at once, as a direct write to the store; returns the deleted object."""
        deleted, _ = self._store.delete(resolve_resource(kind), namespace, name, immediate=True)
        return copy.deepcopy(deleted)

    def get(self, kind: str, namespace: str, name: str) -> JSON | None:
        """A copy of one object, or None."""
        obj = self._store.get(resolve_resource(kind), namespace, name)
        return None if obj is None else copy.deepcopy(obj)

    def list_objects(self, kind: str, namespace: str | None = None) -> list[JSON]:
        """Copies of every object of ``kind``, optionally in one namespace."""
        _, items = self._store.select(resolve_resource(kind), Selector(namespace=namespace))
        return copy.deepcopy(items)

    # -- watch control ----------------------------------------------------------

    @property
    def open_watches(self) -> int:
        """How many watch streams are being served right now."""
        return self._store.open_watches

    def compact(self) -> str:
        """Drop the whole change history; a watch from an older version gets 410."""
        return str(self._store.compact())

    def send_bookmarks(self) -> None:
        """Send a BOOKMARK now on every open watch that allows bookmarks."""
        self._store.signal_watches(BOOKMARK)

    def drop_watches(self, wait: float = 2.0) -> int:
        """Close every open watch connection without ending its stream.

        Changes already queued for a watch are written first; a watch that
        cannot finish within ``wait`` seconds (a client that stopped reading)
        has its socket shut down under it. Returns how many were dropped.
        """
        watches = self._store.signal_watches(DROP)
        deadline = time.monotonic() + wait
        for watch in watches:
            if not watch.closed.wait(max(0.0, deadline - time.monotonic())) and watch.conn:
                with contextlib.suppress(OSError):
                    watch.conn.shutdown(socket.SHUT_RDWR)
        return len(watches)

    # -- authentication and authorization --------------------------------------

    def set_tokens(self, tokens: Mapping[str, Mapping[str, Any] | None]) -> None:
        """The tokens TokenReview accepts, each with its user info (None: rejected as unknown)."""
        self._tokens = dict(tokens)

    def set_authorizer(self, authorizer: Authorizer) -> None:
        """Decide SubjectAccessReviews.

        None allows everything. A callable gets the review's ``spec`` and
        returns a bool or ``(allowed, reason)``. Otherwise it is a collection
        of allowed ``(user, verb, resource, subresource, namespace)`` tuples,
        "*" matching anything; a non-resource review is matched as
        ``(user, verb, path, "", "")``.
        """
        if authorizer is None:
            self._authorize = _allow_all
        elif callable(authorizer):
            self._authorize = _wrap_callable(authorizer)
        else:
            self._authorize = _rule_authorizer(frozenset(authorizer))

    def _authenticate(self, header: str | None) -> None:
        wanted = self.required_token
        if wanted is None:
            return
        scheme, _, token = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), wanted.encode()
        ):
            raise unauthorized()

    def _token_review(self, review: JSON) -> JSON:
        spec = review.get("spec") or {}
        token = spec.get("token") or ""
        if not token:
            raise bad_request("token is required for TokenReview in authentication")
        wanted = list(spec.get("audiences") or [])
        user = self._tokens.get(token)
        status: JSON
        if user is None:
            status = {"user": {}, "error": "invalid bearer token"}
        else:
            token_audiences = list(user.get("audiences") or DEFAULT_AUDIENCES)
            audiences = [a for a in wanted if a in token_audiences] if wanted else token_audiences
            if wanted and not audiences:
                status = {"user": {}, "error": "token audiences are invalid for the target"}
            else:
                groups = list(user.get("groups") or [])
                if "system:authenticated" not in groups:
                    groups.append("system:authenticated")
                info: JSON = {"username": user.get("username", ""), "groups": groups}
                if user.get("uid"):
                    info["uid"] = user["uid"]
                if user.get("extra"):
                    info["extra"] = copy.deepcopy(dict(user["extra"]))
                status = {"authenticated": True, "user": info, "audiences": audiences}
        return {
            "kind": "TokenReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": review.get("metadata") or {},
            "spec": spec,
            "status": status,
        }

    def _access_review(self, review: JSON) -> JSON:
        spec = review.get("spec") or {}
        has_resource = bool(spec.get("resourceAttributes"))
        has_nonresource = bool(spec.get("nonResourceAttributes"))
        if has_resource == has_nonresource:
            detail = (
                "cannot be specified in combination with nonResourceAttributes"
                if has_resource
                else "exactly one of nonResourceAttributes or resourceAttributes must be specified"
            )
            raise invalid(
                "SubjectAccessReview", "", "spec.resourceAttributes", "FieldValueInvalid", detail
            )
        if not spec.get("user") and not spec.get("groups"):
            raise invalid(
                "SubjectAccessReview",
                "",
                "spec.user",
                "FieldValueInvalid",
                'Invalid value: "": at least one of user or group must be specified',
            )
        allowed, reason = self._authorize(spec)
        status: JSON = {"allowed": allowed}
        if reason:
            status["reason"] = reason
        return {
            "kind": "SubjectAccessReview",
            "apiVersion": "authorization.k8s.io/v1",
            "metadata": review.get("metadata") or {},
            "spec": spec,
            "status": status,
        }

    # -- other resources ---------------------------------------------------------

    def _pod_or_404(self, namespace: str, name: str) -> JSON:
        pod = self._store.get("pods", namespace, name)
        if pod is None:
            raise not_found("pods", name)
        return pod

    def _create_namespace(self, body: Any) -> JSON:
        # Namespaces exist implicitly here; creating one answers as a cluster
        # would, and it is listed once something lives in it.
        name = ((body or {}).get("metadata") or {}).get("name") if isinstance(body, dict) else None
        if not isinstance(name, str) or not name:
            raise invalid(
                "Namespace", "", "metadata.name", "FieldValueRequired", "Required value: name"
            )
        return _namespace_object(name)

    def _api_versions(self) -> JSON:
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": self.url.removeprefix("http://")}
            ],
        }

    def _namespace_list(self, query: dict[str, str]) -> JSON:
        selector = parse_selector(
            "namespaces", None, query.get("fieldSelector", ""), query.get("labelSelector", "")
        )
        names = sorted(set(DEFAULT_NAMESPACES) | self._store.namespaces())
        items = [obj for obj in map(_namespace_object, names) if selector.matches(obj)]
        return {
            "kind": "NamespaceList",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": self.resource_version},
            "items": [_list_item(obj) for obj in items],
        }

    # -- request log -------------------------------------------------------------

    def _record(self, record: RequestRecord) -> None:
        with self._log_lock:
            self._requests.append(record)

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request received so far, oldest first."""
        with self._log_lock:
            return list(self._requests)

    def count(
        self, method: str | None = "GET", path_prefix: str = "", watch: bool | None = False
    ) -> int:
        """How many logged requests match; None for method or watch matches any."""
        with self._log_lock:
            return sum(
                1
                for r in self._requests
                if (method is None or r.method == method)
                and r.path.startswith(path_prefix)
                and (watch is None or r.watch == watch)
            )

    def clear_log(self) -> None:
        """Forget the requests recorded so far."""
        with self._log_lock:
            self._requests.clear()


def _allow_all(spec: JSON) -> tuple[bool, str]:
    return True, "allowed: the lab API server authorizes every request"


def _wrap_callable(fn: AuthorizeFn) -> Callable[[JSON], tuple[bool, str]]:
    def authorize(spec: JSON) -> tuple[bool, str]:
        answer = fn(copy.deepcopy(spec))
        if isinstance(answer, tuple):
            return bool(answer[0]), str(answer[1])
        return bool(answer), ""

    return authorize


def _rule_authorizer(rules: frozenset[AllowRule]) -> Callable[[JSON], tuple[bool, str]]:
    def authorize(spec: JSON) -> tuple[bool, str]:
        user = str(spec.get("user") or "")
        ra = spec.get("resourceAttributes")
        if ra:
            attrs: AllowRule = (
                user,
                str(ra.get("verb") or ""),
                str(ra.get("resource") or ""),
                str(ra.get("subresource") or ""),
                str(ra.get("namespace") or ""),
            )
        else:
            nra = spec.get("nonResourceAttributes") or {}
            attrs = (user, str(nra.get("verb") or ""), str(nra.get("path") or ""), "", "")
        for rule in rules:
            if _rule_matches(rule, attrs):
                return True, f"allowed by rule {rule!r}"
        return False, ""

    return authorize


# -- process entry point ---------------------------------------------------------


def _load_json_file(path: str) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _parse_rule(text: str) -> AllowRule:
    parts = text.split(",")
    if len(parts) != 5:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected user,verb,resource,subresource,namespace"
        )
    return (parts[0], parts[1], parts[2], parts[3], parts[4])


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lab.apiserver``: serve until SIGTERM or SIGINT; the URL is printed first."""
    parser = argparse.ArgumentParser(
        prog="python -m lab.apiserver",
        description="Serve the fake Kubernetes API server until SIGTERM or SIGINT.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--bookmark-interval", type=float, default=1.0, metavar="SECONDS")
    parser.add_argument("--max-history", type=int, default=10_000)
    parser.add_argument(
        "--required-token-file", metavar="PATH", help="file holding the bearer token to demand"
    )
    parser.add_argument(
        "--tokens-file",
        metavar="PATH",
        help="JSON object: token -> {username, uid, groups} (or null) for TokenReviews",
    )
    parser.add_argument(
        "--allow",
        action="append",
        type=_parse_rule,
        metavar="USER,VERB,RESOURCE,SUBRESOURCE,NAMESPACE",
        help="allow a SubjectAccessReview ('*' matches anything); without any, all are allowed",
    )
    parser.add_argument(
        "--graceful-delete",
        action="store_true",
        help="delete pods as a cluster does: Terminating until their kubelet confirms",
    )
    parser.add_argument(
        "--kubelet-token-file",
        metavar="PATH",
        help="file holding the token the node's kubelet demands (logs, exec, port-forward)",
    )
    parser.add_argument(
        "--seed",
        metavar="PATH",
        help="JSON list of objects (each with its kind) to create at start",
    )
    args = parser.parse_args(argv)

    required = None
    if args.required_token_file:
        with open(args.required_token_file, encoding="utf-8") as fh:
            required = fh.read().strip()
    tokens = _load_json_file(args.tokens_file) if args.tokens_file else None
    kubelet_token = None
    if args.kubelet_token_file:
        with open(args.kubelet_token_file, encoding="utf-8") as fh:
            kubelet_token = fh.read().strip()
    server = FakeApiServer(
        args.host,
        args.port,
        bookmark_interval=args.bookmark_interval,
        max_history=args.max_history,
        tokens=tokens,
        authorizer=args.allow,
        required_token=required,
        kubelet_token=kubelet_token,
        graceful_delete=args.graceful_delete,
    )
    if args.seed:
        for obj in _load_json_file(args.seed):
            server.add(obj["kind"], obj)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start()
    try:
        print(server.url, flush=True)
        while not stop.wait(1.0):
            pass
    finally:
        server.stop()
    return 0
