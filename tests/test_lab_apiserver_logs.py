"""``kubectl logs -f`` through the lab API server: a followed log arrives whole.

The API server relays the kubelet's chunked answer. A container that is
quiet longer than the server's hang-up check (one second) must not cut the
stream or lose its place in it: kubectl then says "unexpected EOF".
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from lab.apiserver.kubelet import KubeletLink

TICKS = [b"tick-1\n", b"tick-2\n", b"tick-3\n"]
QUIET_SECONDS = 1.6


class _QuietKubelet(BaseHTTPRequestHandler):
    """A kubelet whose container prints a line, then says nothing for a while, three times."""

    protocol_version = "HTTP/1.1"
    quiet_seconds = QUIET_SECONDS

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i, tick in enumerate(TICKS):
            if i:
                time.sleep(self.quiet_seconds)
            self.wfile.write(b"%x\r\n%s\r\n" % (len(tick), tick))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Nodes:
    """The one node the pod runs on, with its kubelet's port."""

    def __init__(self, port: int) -> None:
        self.port = port

    def get(self, resource: str, namespace: str, name: str) -> dict[str, Any]:
        return {"status": {"daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}}}}


class _Handler:
    """The API server's side of kubectl's connection."""

    command = "GET"
    headers: dict[str, str] = {}

    def __init__(self, connection: socket.socket) -> None:
        self.connection = connection
        self.close_connection = False
        self._head: list[bytes] = []

    def send_response(self, code: int, message: str | None = None) -> None:
        self._head.append(b"HTTP/1.1 %d OK\r\n" % code)

    def send_header(self, keyword: str, value: str) -> None:
        self._head.append(f"{keyword}: {value}\r\n".encode())

    def end_headers(self) -> None:
        self.connection.sendall(b"".join(self._head) + b"\r\n")


class _SilentKubelet(_QuietKubelet):
    """One line, then nothing for longer than any test waits."""

    quiet_seconds = 60.0


def _serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    # Its handlers may still sleep at the end; they must not hold the test up.
    server.daemon_threads = True
    server.block_on_close = False
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def kubelet_port() -> Iterator[int]:
    yield from _serve(_QuietKubelet)


@pytest.fixture
def silent_kubelet_port() -> Iterator[int]:
    yield from _serve(_SilentKubelet)


def _chunks(raw: bytes) -> tuple[bytes, bool]:
    """The body of a chunked answer, and whether it ended with the last chunk."""
    body = raw.split(b"\r\n\r\n", 1)[1]
    out = b""
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return out, True
        out += body[:size]
        body = body[size + 2 :]
    return out, False


def _follow(kubelet_port: int) -> tuple[threading.Thread, socket.socket, socket.socket]:
    """``kubectl logs -f ticker`` relayed from the kubelet on ``kubelet_port``, on a thread.

    Returns the relay's thread, the server's end of kubectl's connection and kubectl's end.
    """
    link = KubeletLink(_Nodes(kubelet_port), token="kubelet-token")  # type: ignore[arg-type]
    server_side, kubectl_side = socket.socketpair()
    pod = {
        "metadata": {"namespace": "default", "name": "ticker"},
        "spec": {"nodeName": "lab-node", "containers": [{"name": "tick"}]},
    }
    relay = threading.Thread(
        target=link.stream_log, args=(_Handler(server_side), pod, {"follow": "true"})
    )
    relay.start()
    return relay, server_side, kubectl_side


def test_a_followed_log_with_quiet_spells_arrives_whole_and_ends_properly(
    kubelet_port: int,
) -> None:
    relay, server_side, kubectl_side = _follow(kubelet_port)
    relay.join(QUIET_SECONDS * len(TICKS) + 10)
    assert not relay.is_alive(), "the relay did not end when the kubelet's answer did"
    server_side.close()
    received = b""
    while chunk := kubectl_side.recv(65536):
        received += chunk
    kubectl_side.close()
    body, ended = _chunks(received)
    assert body == b"".join(TICKS)
    assert ended, "no last chunk: kubectl would say 'unexpected EOF'"


def test_a_followed_log_stops_being_read_when_kubectl_hangs_up(silent_kubelet_port: int) -> None:
    relay, server_side, kubectl_side = _follow(silent_kubelet_port)
    assert kubectl_side.recv(65536).startswith(b"HTTP/1.1 200")
    kubectl_side.close()
    hung_up = time.monotonic()
    relay.join(15)
    assert not relay.is_alive(), "the relay still reads the kubelet for a client that left"
    # Within a hang-up check or two, not when the container next speaks.
    assert time.monotonic() - hung_up < 5
    server_side.close()
