"""The lab kubelet's own HTTP server: container logs, and the way to exec and port-forward.

The API server reaches a node's kubelet for what only the node has, as in a
cluster: ``kubectl logs`` becomes ``GET /containerLogs/<ns>/<pod>/<container>``
here (read from the CRI log files the runtime writes, with ``follow``,
``previous``, ``tailLines``, ``timestamps``, ``sinceSeconds`` and
``limitBytes``), and ``kubectl exec`` and ``port-forward`` become
``/exec/...`` and ``/portForward/...``, which ask the runtime for its
streaming URL through CRI (``Exec``, ``PortForward``) and answer with a
redirect to it, as kubelets did with ``--redirect-container-streaming``. The
API server follows the redirect and joins the client's upgraded connection
to the runtime's streaming server.

It listens on the loopback only and every request must carry the bearer
token the lab gave the API server: whoever reaches it could otherwise run
commands in any container of the node.

Owns the kubelet's HTTP endpoints and the reading of CRI log files for them.
Imports ``lab.kubelet.runtime`` for what the runtime holds and
``lab.cri_pods`` for the CRI calls.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import re
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs, unquote, urlsplit

from lab.cri_pods import CriPodDriver
from lab.errors import CriCallFailed
from lab.kubelet.runtime import PodRuntime, RuntimeContainer, StatusCache, read_pod_runtime

JSON = dict[str, Any]

_log = logging.getLogger(__name__)

# How often a followed log is read again for new lines, and the container's state checked.
FOLLOW_POLL: Final = 0.2


@dataclass(frozen=True, slots=True)
class PodRef:
    """What the server needs of a pod the kubelet runs: its identity and its spec."""

    namespace: str
    name: str
    uid: str
    pod: JSON


class RequestFailed(Exception):
    """A request that cannot be served: the HTTP code and the message the API server passes on."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# -- CRI log files -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogLine:
    """One whole line of a CRI log file: when the runtime wrote it and what."""

    stamp: str
    content: bytes


def parse_cri_log(data: bytes) -> tuple[list[LogLine], int]:
    """Whole lines of CRI log text (``<time> <stream> <P|F> <text>``), and the bytes consumed.

    Partial records (``P``) are joined to the full one that ends them; a
    last line without its newline is left for the next read.
    """
    lines: list[LogLine] = []
    pending: list[bytes] = []
    consumed = 0
    start = 0
    while True:
        end = data.find(b"\n", start)
        if end < 0:
            break
        record = data[start:end]
        start = end + 1
        parts = record.split(b" ", 3)
        if len(parts) < 3:
            consumed = start
            continue
        stamp, tag = parts[0], parts[2]
        text = parts[3] if len(parts) == 4 else b""
        pending.append(text)
        if tag == b"P":
            continue
        lines.append(LogLine(stamp.decode(errors="replace"), b"".join(pending) + b"\n"))
        pending = []
        consumed = start
    return lines, consumed


_STAMP: Final = re.compile(r"^([^.]+)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def _stamp_seconds(stamp: str) -> float:
    # RFC 3339 with nanoseconds; Python reads microseconds at most.
    found = _STAMP.match(stamp)
    if found is None:
        return 0.0
    head, frac, zone = found.groups()
    text = f"{head}.{(frac or '0')[:6]}{'+00:00' if zone == 'Z' else zone}"
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return 0.0


@dataclass(frozen=True, slots=True)
class LogOptions:
    """The query of ``kubectl logs`` as the API server passes it on."""

    follow: bool = False
    previous: bool = False
    tail_lines: int | None = None
    timestamps: bool = False
    since_seconds: int | None = None
    limit_bytes: int | None = None


def _render(line: LogLine, timestamps: bool) -> bytes:
    return (line.stamp.encode() + b" " + line.content) if timestamps else line.content


def read_log(
    path: Path,
    options: LogOptions,
    still_running: Callable[[], bool],
    stopped: threading.Event,
) -> Iterator[bytes]:
    """The container's log as kubectl prints it, followed while ``still_running``."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = b""
    lines, offset = parse_cri_log(data)
    if options.since_seconds is not None:
        cutoff = time.time() - options.since_seconds
        lines = [line for line in lines if _stamp_seconds(line.stamp) >= cutoff]
    if options.tail_lines is not None:
        lines = lines[-options.tail_lines :] if options.tail_lines > 0 else []
    budget = options.limit_bytes

    def within_budget(line: LogLine) -> bytes | None:
        """The line as kubectl prints it, cut to what ``limitBytes`` leaves; None once spent."""
        nonlocal budget
        chunk = _render(line, options.timestamps)
        if budget is None:
            return chunk
        if budget <= 0:
            return None
        chunk = chunk[:budget]
        budget -= len(chunk)
        return chunk

    for line in lines:
        if (chunk := within_budget(line)) is None:
            return
        yield chunk
    if not options.follow:
        return
    with contextlib.ExitStack() as stack:
        try:
            handle = stack.enter_context(path.open("rb"))
        except FileNotFoundError:
            return
        handle.seek(offset)
        rest = b""
        while not stopped.is_set():
            running = still_running()
            got = handle.read()
            if got:
                new, used = parse_cri_log(rest + got)
                rest = (rest + got)[used:]
                for line in new:
                    if (chunk := within_budget(line)) is None:
                        return
                    yield chunk
                continue
            if not running:
                # Read once more after the exit was seen: its last lines.
                return
            stopped.wait(FOLLOW_POLL)


# -- the server ------------------------------------------------------------------


class KubeletServer:
    """The kubelet's HTTP endpoints on the loopback; ``start()``, ``stop()``."""

    def __init__(
        self,
        driver: CriPodDriver,
        find_pod: Callable[[str, str], PodRef | None],
        token: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if not token:
            raise ValueError("the kubelet server needs a token")
        self.driver = driver
        self.find_pod = find_pod
        self.token = token
        self._cache = StatusCache()
        self._stopped = threading.Event()
        self._httpd = _Server((host, port), self)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self._httpd.server_address[1])

    def start(self) -> KubeletServer:
        """Serve on a thread of its own."""
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="kubelet-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; followed logs end."""
        self._stopped.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)

    # -- what the endpoints do ----------------------------------------------------

    def _pod(self, namespace: str, name: str) -> PodRef:
        ref = self.find_pod(namespace, name)
        if ref is None:
            raise RequestFailed(404, f'pod "{name}" in namespace "{namespace}" is not on this node')
        return ref

    def _runtime(self, ref: PodRef) -> PodRuntime:
        try:
            return read_pod_runtime(self.driver, ref.uid, self._cache)
        except CriCallFailed as exc:
            raise RequestFailed(500, str(exc)) from exc

    def _waiting_reason(self, ref: PodRef, container: str) -> str:
        status = ref.pod.get("status") or {}
        for key in ("initContainerStatuses", "containerStatuses"):
            for cs in status.get(key) or []:
                if cs.get("name") == container:
                    return str(((cs.get("state") or {}).get("waiting") or {}).get("reason") or "")
        return "ContainerCreating"

    def log_target(
        self, namespace: str, name: str, container: str, previous: bool
    ) -> tuple[RuntimeContainer, Callable[[], bool]]:
        """The container instance whose log to read, and a check that it still runs."""
        ref = self._pod(namespace, name)
        rt = self._runtime(ref)
        instances = [i for i in rt.instances(container) if not i.created_only]
        if previous:
            if len(instances) < 2:
                raise RequestFailed(
                    400,
                    f'previous terminated container "{container}" in pod "{name}" not found',
                )
            return instances[-2], lambda: False
        if not instances:
            reason = self._waiting_reason(ref, container) or "ContainerCreating"
            raise RequestFailed(
                400, f'container "{container}" in pod "{name}" is waiting to start: {reason}'
            )
        current = instances[-1]

        def running() -> bool:
            try:
                status = self.driver.container_status(current.id)
            except CriCallFailed:
                return False
            return bool(status.status.state == 1)  # CONTAINER_RUNNING

        return current, running

    def stream_url(self, kind: str, namespace: str, name: str, query: dict[str, list[str]]) -> str:
        """Ask the runtime for the streaming URL of an exec or a port-forward."""
        ref = self._pod(namespace, name)
        rt = self._runtime(ref)
        try:
            if kind == "portForward":
                sandbox = rt.latest_sandbox
                if sandbox is None or not sandbox.ready:
                    raise RequestFailed(400, f'pod "{name}" has no running sandbox')
                ports = [int(p) for p in query.get("port", []) if p.isdigit()]
                return self.driver.port_forward_url(sandbox.id, ports)
            container = (query.get("container") or [""])[0]
            current = rt.latest(container)
            if current is None or not current.running:
                raise RequestFailed(400, f'container "{container}" in pod "{name}" is not running')

            def flag(key: str) -> bool:
                return (query.get(key) or [""])[0] in ("1", "true")

            command = query.get("command") or []
            if not command:
                raise RequestFailed(400, "you must specify at least one command for the container")
            return self.driver.exec_url(
                current.id,
                command,
                tty=flag("tty"),
                stdin=flag("input"),
                stdout=flag("output"),
                stderr=flag("error"),
            )
        except CriCallFailed as exc:
            raise RequestFailed(500, str(exc)) from exc


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: KubeletServer) -> None:
        self.app = app
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can stall on DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60

    @property
    def app(self) -> KubeletServer:
        server = self.server
        assert isinstance(server, _Server)
        return server.app

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _fail(self, code: int, message: str) -> None:
        body = json.dumps({"message": message}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        app = self.app
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), app.token.encode()
        ):
            self._fail(401, "Unauthorized")
            return
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        try:
            match parts:
                case ["healthz"]:
                    self._send_text(b"ok")
                case ["containerLogs", namespace, name, container]:
                    self._logs(namespace, name, container, query)
                case ["exec", namespace, name, container]:
                    query["container"] = [container]
                    self._redirect(app.stream_url("exec", namespace, name, query))
                case ["portForward", namespace, name]:
                    self._redirect(app.stream_url("portForward", namespace, name, query))
                case _:
                    self._fail(404, f"the kubelet serves no {url.path}")
        except RequestFailed as exc:
            self._fail(exc.code, exc.message)
        except OSError:
            self.close_connection = True

    def _send_text(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _logs(self, namespace: str, name: str, container: str, query: dict[str, list[str]]) -> None:
        def one(key: str) -> str:
            return (query.get(key) or [""])[-1]

        def number(key: str) -> int | None:
            text = one(key)
            if not text:
                return None
            try:
                value = int(text)
            except ValueError:
                raise RequestFailed(400, f"{key} must be an integer, got {text!r}") from None
            return value

        options = LogOptions(
            follow=one("follow") in ("1", "true"),
            previous=one("previous") in ("1", "true"),
            tail_lines=number("tailLines"),
            timestamps=one("timestamps") in ("1", "true"),
            since_seconds=number("sinceSeconds"),
            limit_bytes=number("limitBytes"),
        )
        instance, running = self.app.log_target(namespace, name, container, options.previous)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        with contextlib.suppress(OSError):
            for chunk in read_log(Path(instance.log_path), options, running, self.app._stopped):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        self.close_connection = True
