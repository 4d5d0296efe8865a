"""The lab kubelet's HTTP client for the API server: raw JSON over ``http.client``.

Plain HTTP/1.1 with the standard library, not the kubernetes client: the
kubelet needs a handful of verbs on pods and events, a watch it can cut from
another thread (shutting down its socket), and raw JSON both ways.

Owns the kubelet's requests and its watch stream. Imports ``lab.errors``
only.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
from collections.abc import Iterator, Mapping
from typing import Any, Final
from urllib.parse import quote, urlencode, urlsplit

from lab.errors import LabError

JSON = dict[str, Any]

MERGE_PATCH: Final = "application/merge-patch+json"


class ApiError(LabError):
    """A request failed: ``code`` is the HTTP status, or None when the server was unreachable."""

    def __init__(self, message: str, code: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason

    @property
    def unreachable(self) -> bool:
        """True when no answer came at all (connection refused, reset, timed out)."""
        return self.code is None


def _pod_path(namespace: str, name: str = "", sub: str = "") -> str:
    path = f"/api/v1/namespaces/{quote(namespace, safe='')}/pods"
    if name:
        path += "/" + quote(name, safe="")
    if sub:
        path += "/" + sub
    return path


class Watch:
    """One open watch stream; iterate for ``(type, object)``; ``close()`` from any thread."""

    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse) -> None:
        self._conn = conn
        self._resp = resp
        self._closed = threading.Event()

    def __iter__(self) -> Iterator[tuple[str, JSON]]:
        try:
            while not self._closed.is_set():
                try:
                    line = self._resp.readline()
                except (OSError, http.client.HTTPException, ValueError) as exc:
                    if self._closed.is_set():
                        return
                    raise ApiError(f"watch stream broke: {exc}") from exc
                if not line:
                    return
                line = line.strip()
                if not line:
                    continue
                try:
                    event = json.loads(line)
                    yield str(event["type"]), dict(event["object"])
                except (ValueError, KeyError, TypeError) as exc:
                    raise ApiError(
                        f"watch sent a line that is not an event: {line[:200]!r}"
                    ) from exc
        finally:
            self.close()

    def close(self) -> None:
        """End the stream now, also from another thread blocked reading it."""
        if self._closed.is_set():
            return
        self._closed.set()
        sock = self._conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._conn.close()


class ApiClient:
    """The lab kubelet's client of the API server: plain HTTP, JSON, one connection per call."""

    def __init__(self, url: str, *, token: str | None = None, timeout: float = 5.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise LabError(
                f"--api-server {url!r}: the lab kubelet talks plain http://HOST:PORT "
                "to the lab API server"
            )
        self.url = url.rstrip("/")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.token = token
        self.timeout = timeout

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "podlens-lab-kubelet"}
        if content_type:
            headers["Content-Type"] = content_type
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> JSON:
        """One call; the decoded JSON answer, or ApiError with the Status's code and reason."""
        target = path + ("?" + urlencode(query) if query else "")
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        conn = self._connect(self.timeout)
        try:
            conn.request(
                method, target, body=data, headers=self._headers(content_type if data else None)
            )
            resp = conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise ApiError(f"{method} {path}: API server unreachable: {exc}") from exc
        finally:
            conn.close()
        try:
            doc = json.loads(raw) if raw else {}
        except ValueError:
            doc = {}
        if resp.status >= 300:
            message = doc.get("message") if isinstance(doc, dict) else None
            reason = doc.get("reason", "") if isinstance(doc, dict) else ""
            raise ApiError(
                f"{method} {path}: {resp.status} {message or raw[:200]!r}",
                code=resp.status,
                reason=str(reason or ""),
            )
        if not isinstance(doc, dict):
            raise ApiError(f"{method} {path}: the answer is not a JSON object")
        return doc

    # -- pods --------------------------------------------------------------

    def list_pods(self, field_selector: str) -> tuple[list[JSON], str]:
        """List pods by field selector: the items and the list's resourceVersion."""
        doc = self.request("GET", "/api/v1/pods", query={"fieldSelector": field_selector})
        items = [dict(i) for i in doc.get("items") or [] if isinstance(i, dict)]
        return items, str((doc.get("metadata") or {}).get("resourceVersion") or "")

    def watch_pods(self, field_selector: str, resource_version: str, timeout: float) -> Watch:
        """Watch pods from ``resource_version``, with bookmarks, for up to ``timeout`` seconds."""
        query = {
            "watch": "true",
            "fieldSelector": field_selector,
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(max(1, int(timeout))),
        }
        # The socket timeout only has to outlast the gaps between bookmarks.
        conn = self._connect(timeout + 30)
        try:
            conn.request("GET", "/api/v1/pods?" + urlencode(query), headers=self._headers(None))
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise ApiError(f"watch pods: API server unreachable: {exc}") from exc
        if resp.status != 200:
            raw = resp.read()
            conn.close()
            raise ApiError(f"watch pods: {resp.status} {raw[:200]!r}", code=resp.status)
        return Watch(conn, resp)

    def get_pod(self, namespace: str, name: str) -> JSON | None:
        """One pod, or None when it does not exist."""
        try:
            return self.request("GET", _pod_path(namespace, name))
        except ApiError as exc:
            if exc.code == 404:
                return None
            raise

    def patch_pod(self, namespace: str, name: str, patch: JSON) -> JSON:
        """JSON merge patch of a pod."""
        return self.request("PATCH", _pod_path(namespace, name), patch, content_type=MERGE_PATCH)

    def patch_pod_status(self, namespace: str, name: str, status: JSON) -> JSON:
        """JSON merge patch of a pod's status subresource."""
        return self.request(
            "PATCH",
            _pod_path(namespace, name, "status"),
            {"status": status},
            content_type=MERGE_PATCH,
        )

    def delete_pod(self, namespace: str, name: str, uid: str) -> None:
        """Delete a pod at once, only if it still has ``uid``; a pod already gone is no error."""
        body = {
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": uid},
        }
        try:
            self.request("DELETE", _pod_path(namespace, name), body)
        except ApiError as exc:
            if exc.code not in (404, 409):
                raise

    def register_node(self, node: JSON) -> JSON:
        """Create the Node; when it exists already, replace its labels and status."""
        try:
            return self.request("POST", "/api/v1/nodes", node)
        except ApiError as exc:
            if exc.code != 409:
                raise
        path = "/api/v1/nodes/" + quote(str(node["metadata"]["name"]), safe="")
        self.request(
            "PATCH",
            path,
            {"metadata": {"labels": node["metadata"]["labels"]}},
            content_type=MERGE_PATCH,
        )
        return self.request(
            "PATCH", path + "/status", {"status": node["status"]}, content_type=MERGE_PATCH
        )

    # -- events ------------------------------------------------------------

    def create_event(self, namespace: str, event: JSON) -> JSON:
        """Create an Event."""
        return self.request("POST", f"/api/v1/namespaces/{quote(namespace, safe='')}/events", event)

    def patch_event(self, namespace: str, name: str, patch: JSON) -> JSON:
        """JSON merge patch of an Event (its count and lastTimestamp)."""
        return self.request(
            "PATCH",
            f"/api/v1/namespaces/{quote(namespace, safe='')}/events/{quote(name, safe='')}",
            patch,
            content_type=MERGE_PATCH,
        )
