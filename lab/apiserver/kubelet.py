"""The lab API server's link to the node's kubelet: pod logs, exec and port-forward.

As in a cluster, these go through the API server to the kubelet of the
pod's node, found at the port its Node object gives in
``status.daemonEndpoints.kubeletEndpoint``, on the loopback (the lab is one
machine), with the token the lab gave both. ``logs`` is streamed back as
the kubelet sends it. ``exec`` and ``port-forward`` are upgraded
connections: the kubelet answers with a redirect to the container runtime's
streaming server (CRI ``Exec``/``PortForward``), and this module sends the
client's upgrade request there and then joins the two connections byte for
byte, so kubectl speaks SPDY with containerd's streaming server itself.

kubectl first tries a WebSocket (``v5.channel.k8s.io``); a real API server
translates that to SPDY towards the kubelet. The lab does not translate: it
refuses the WebSocket upgrade with a 400, and kubectl falls back to SPDY, as
it does with any server that does not upgrade.

Owns the requests to the kubelet and the joining of streams. Imports
``lab.apiserver.status`` and ``lab.apiserver.store``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import select
import selectors
import socket
import threading
from collections.abc import Mapping
from typing import Any, Final, Protocol
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from lab.apiserver.status import ApiStatusError, bad_request
from lab.apiserver.store import Store

JSON = dict[str, Any]

KUBELET_TIMEOUT: Final = 30.0
# How often a followed log checks that its client is still there.
_FOLLOW_CHECK: Final = 1.0
_LOG_PARAMS: Final = ("follow", "previous", "tailLines", "timestamps", "sinceSeconds", "limitBytes")
_EXEC_FLAGS: Final = {"stdin": "input", "stdout": "output", "stderr": "error", "tty": "tty"}
_UPGRADE_HEADERS: Final = ("X-Stream-Protocol-Version",)


class Handler(Protocol):
    """What this module needs of the server's request handler."""

    headers: Any
    connection: socket.socket
    close_connection: bool
    command: str

    def send_response(self, code: int, message: str | None = None) -> None:
        """Start the response with its status line."""

    def send_header(self, keyword: str, value: str) -> None:
        """Add one response header."""

    def end_headers(self) -> None:
        """End the response headers."""


def _flag(value: str | None) -> bool:
    return value in ("1", "t", "T", "true", "True", "TRUE")


def pick_container(pod: JSON, asked: str) -> str:
    """The container a logs or exec request means, with the real server's refusals."""
    spec = pod.get("spec") or {}
    name = (pod.get("metadata") or {}).get("name", "")
    apps = [str(c.get("name")) for c in spec.get("containers") or []]
    inits = [str(c.get("name")) for c in spec.get("initContainers") or []]
    if not asked:
        if len(apps) == 1:
            return apps[0]
        message = (
            f"a container name must be specified for pod {name}, choose one of: [{' '.join(apps)}]"
        )
        if inits:
            message += f" or one of the init containers: [{' '.join(inits)}]"
        raise bad_request(message)
    if asked not in apps and asked not in inits:
        raise bad_request(f"container {asked} is not valid for pod {name}")
    return asked


class KubeletLink:
    """Reaches the kubelet of a pod's node for what only the node has."""

    def __init__(self, store: Store, token: str | None) -> None:
        self._store = store
        self.token = token

    def _port(self, node_name: str) -> int:
        if not self.token:
            raise bad_request(
                "this lab API server was started without --kubelet-token-file, so it cannot "
                "reach the kubelet for logs, exec or port-forward"
            )
        node = self._store.get("nodes", "", node_name)
        port = (
            (((node or {}).get("status") or {}).get("daemonEndpoints") or {})
            .get("kubeletEndpoint", {})
            .get("Port")
        )
        if not isinstance(port, int) or port <= 0:
            raise bad_request(f"node {node_name!r} has registered no kubelet endpoint")
        return port

    def _ask(
        self, port: int, method: str, path: str, timeout: float | None
    ) -> http.client.HTTPResponse:
        return self._ask_on_socket(port, method, path, timeout)[0]

    def _ask_on_socket(
        self, port: int, method: str, path: str, timeout: float | None
    ) -> tuple[http.client.HTTPResponse, socket.socket]:
        """The kubelet's answer, and the socket it comes on (reads then wait ``timeout``)."""
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=KUBELET_TIMEOUT)
        try:
            conn.connect()
            # Kept here: a response that ends with its connection takes the
            # socket over, and the connection forgets it.
            sock = conn.sock
            assert sock is not None
            conn.request(method, path, headers={"Authorization": f"Bearer {self.token}"})
            resp = conn.getresponse()
        except OSError as exc:
            conn.close()
            raise ApiStatusError(
                500, "InternalError", f"the kubelet on port {port} did not answer: {exc}"
            ) from exc
        sock.settimeout(timeout)
        return resp, sock

    @staticmethod
    def _failure(resp: http.client.HTTPResponse) -> ApiStatusError:
        raw = resp.read(64 * 1024)
        try:
            message = str(json.loads(raw).get("message") or raw.decode(errors="replace"))
        except (ValueError, AttributeError):
            message = raw.decode(errors="replace").strip()
        if resp.status == 404:
            return ApiStatusError(404, "NotFound", message, {})
        if resp.status in (400, 401, 403):
            return bad_request(message)
        return ApiStatusError(500, "InternalError", message)

    # -- logs -------------------------------------------------------------------

    def stream_log(self, handler: Handler, pod: JSON, query: Mapping[str, str]) -> None:
        """``GET pods/<name>/log``: the kubelet's answer, streamed as it comes."""
        meta = pod.get("metadata") or {}
        container = pick_container(pod, query.get("container", ""))
        node = (pod.get("spec") or {}).get("nodeName")
        if not node:
            # An unscheduled pod has no log yet; a real server answers empty too.
            self._start_text(handler)
            self._end_chunks(handler)
            return
        port = self._port(str(node))
        params = {k: query[k] for k in _LOG_PARAMS if query.get(k)}
        path = "/containerLogs/{}/{}/{}".format(
            quote(meta.get("namespace", ""), safe=""),
            quote(meta.get("name", ""), safe=""),
            quote(container, safe=""),
        )
        follow = _flag(query.get("follow"))
        # A followed log is read without a timeout: http.client's chunked
        # reader cannot resume after one (it loses its place between a chunk's
        # end and the next size line, and the stream ends short). A watcher
        # ends the read instead when the client hangs up.
        resp, upstream = self._ask_on_socket(
            port,
            "GET",
            path + ("?" + urlencode(params) if params else ""),
            None if follow else KUBELET_TIMEOUT,
        )
        done = threading.Event()
        if follow:
            threading.Thread(
                target=_end_when_client_leaves,
                args=(handler.connection, upstream, done),
                name="log-follow-watch",
                daemon=True,
            ).start()
        try:
            if resp.status != 200:
                raise self._failure(resp)
            self._start_text(handler)
            while True:
                try:
                    chunk = resp.read1(64 * 1024)
                except (OSError, ValueError, http.client.HTTPException):
                    # The watcher shut the kubelet's stream: nobody is reading.
                    break
                if not chunk:
                    break
                try:
                    handler.connection.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                except OSError:
                    break  # the client hung up between two reads
            self._end_chunks(handler)
        finally:
            done.set()
            resp.close()

    @staticmethod
    def _start_text(handler: Handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/plain")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()

    @staticmethod
    def _end_chunks(handler: Handler) -> None:
        with contextlib.suppress(OSError):
            handler.connection.sendall(b"0\r\n\r\n")
        handler.close_connection = True

    # -- exec and port-forward ------------------------------------------------------

    def stream(self, handler: Handler, sub: str, pod: JSON, raw_path: str) -> None:
        """``pods/<name>/exec|portforward``: upgrade through to the runtime's streaming server."""
        upgrade = (handler.headers.get("Upgrade") or "").lower()
        if "websocket" in upgrade:
            raise bad_request(
                "the stand-in lab streams exec and port-forward over SPDY only; kubectl falls "
                "back to it"
            )
        if not upgrade.startswith("spdy/"):
            raise bad_request("Upgrade request required")
        meta = pod.get("metadata") or {}
        query = parse_qs(urlsplit(raw_path).query, keep_blank_values=True)
        node = (pod.get("spec") or {}).get("nodeName")
        if not node:
            raise bad_request(f"pod {meta.get('name')} does not have a host assigned")
        port = self._port(str(node))
        ns, name = quote(meta.get("namespace", ""), safe=""), quote(meta.get("name", ""), safe="")
        if sub == "exec":
            container = pick_container(pod, (query.get("container") or [""])[0])
            commands = query.get("command") or []
            if not commands:
                raise bad_request("you must specify at least one command for the container")
            params: list[tuple[str, str]] = [("command", c) for c in commands]
            params += [
                (flag, "1")
                for asked, flag in _EXEC_FLAGS.items()
                if _flag((query.get(asked) or [""])[0])
            ]
            path = f"/exec/{ns}/{name}/{quote(container, safe='')}?{urlencode(params)}"
        else:
            ports = [("port", p) for p in query.get("ports") or [] if p.isdigit()]
            path = f"/portForward/{ns}/{name}" + ("?" + urlencode(ports) if ports else "")
        resp = self._ask(port, "POST", path, KUBELET_TIMEOUT)
        try:
            if resp.status != 302:
                raise self._failure(resp)
            location = resp.getheader("Location") or ""
        finally:
            resp.close()
        self._join(handler, location)

    def _join(self, handler: Handler, location: str) -> None:
        target = urlsplit(location)
        if target.scheme != "http" or target.hostname not in ("127.0.0.1", "::1", "localhost"):
            # The runtime's streaming server listens on the loopback; anything else is refused.
            raise ApiStatusError(
                500, "InternalError", f"the runtime's streaming URL is not local: {location!r}"
            )
        try:
            upstream = socket.create_connection(
                (target.hostname, target.port or 80), timeout=KUBELET_TIMEOUT
            )
        except OSError as exc:
            raise ApiStatusError(
                500, "InternalError", f"the runtime's streaming server did not answer: {exc}"
            ) from exc
        handler.close_connection = True
        request_target = (target.path or "/") + (f"?{target.query}" if target.query else "")
        with upstream:
            lines = [
                f"{handler.command} {request_target} HTTP/1.1",
                f"Host: {target.netloc}",
                "Connection: Upgrade",
                f"Upgrade: {handler.headers.get('Upgrade')}",
                "Content-Length: 0",
            ]
            for header in _UPGRADE_HEADERS:
                lines += [f"{header}: {v}" for v in handler.headers.get_all(header) or []]
            upstream.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            upstream.settimeout(None)
            handler.connection.settimeout(None)
            splice(handler.connection, upstream)


def _end_when_client_leaves(
    client: socket.socket, upstream: socket.socket, done: threading.Event
) -> None:
    """Shut the kubelet's stream down once ``client`` has hung up, so the blocked read ends."""
    while not done.wait(_FOLLOW_CHECK):
        if _client_gone(client):
            with contextlib.suppress(OSError):
                upstream.shutdown(socket.SHUT_RDWR)
            return


def _client_gone(conn: socket.socket) -> bool:
    try:
        readable, _, _ = select.select([conn], [], [], 0)
        return bool(readable) and conn.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def splice(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until both sides have closed; a half-close is passed on."""
    peers = {a: b, b: a}
    open_reads: set[socket.socket] = {a, b}
    with selectors.DefaultSelector() as sel:
        for sock in open_reads:
            sel.register(sock, selectors.EVENT_READ)
        while open_reads:
            for key, _ in sel.select():
                sock = peers[b] if key.fileobj is a else peers[a]
                try:
                    data = sock.recv(64 * 1024)
                except OSError:
                    data = b""
                peer = peers[sock]
                if data:
                    try:
                        peer.sendall(data)
                        continue
                    except OSError:
                        return
                sel.unregister(sock)
                open_reads.discard(sock)
                with contextlib.suppress(OSError):
                    peer.shutdown(socket.SHUT_WR)
