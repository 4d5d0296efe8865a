"""A local port for one agent, each connection to it carried by a port-forward of its own.

What ``kubectl port-forward`` does, in-process: the HTTP client connects to
127.0.0.1:<port> and the bytes go through the API server and the node's
kubelet into the agent pod's network namespace, TLS and the caller's token
included, untouched. The first port-forward is opened when the tunnel
starts, so a refusal (no ``pods/portforward``) is raised there, with the API
server's status, instead of showing up later as a closed connection.

Imports the standard library only; what opens a port-forward is the caller's.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import Protocol


class ForwardLike(Protocol):
    """An open port-forward: its socket and what its error channel said."""

    sock: socket.socket

    @property
    def error(self) -> str | None:
        """The error channel's text, if any."""

    def close(self) -> None:
        """End it."""


class Tunnel:
    """127.0.0.1:<port> whose connections reach one agent through port-forwards."""

    def __init__(self, open_forward: Callable[[], ForwardLike], timeout: float) -> None:
        self._open = open_forward
        self._timeout = timeout
        self._spare: ForwardLike | None = None
        self._server: asyncio.Server | None = None
        self._relays: set[asyncio.Task[None]] = set()
        self._forwards: list[ForwardLike] = []
        # The last port-forward's error channel (e.g. nothing listens on the port).
        self.last_error: str | None = None

    async def start(self) -> int:
        """Open the first port-forward and listen; the local port. Raises what opening raises."""
        self._spare = await self._open_one()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _open_one(self) -> ForwardLike:
        forward = await asyncio.wait_for(asyncio.to_thread(self._open), self._timeout)
        self._forwards.append(forward)
        return forward

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._relays.add(task)
        try:
            forward, self._spare = self._spare, None
            if forward is None:
                forward = await self._open_one()
            far_reader, far_writer = await asyncio.open_connection(sock=forward.sock)
            await _relay(reader, writer, far_reader, far_writer)
            self.last_error = forward.error or self.last_error
        except asyncio.CancelledError:
            # The tunnel is closing: this connection simply ends (asyncio's server
            # would report a cancelled handler as an error).
            pass
        except Exception as exc:
            # A failed relay ends this connection only; the client sees it closed.
            self.last_error = f"{type(exc).__name__}: {exc}"
        finally:
            with contextlib.suppress(OSError):
                writer.close()
            if task is not None:
                self._relays.discard(task)

    async def close(self) -> None:
        """Stop listening, end every relay and port-forward."""
        if self._server is not None:
            self._server.close()
        relays = list(self._relays)
        for task in relays:
            task.cancel()
        await asyncio.gather(*relays, return_exceptions=True)
        for forward in self._forwards:
            with contextlib.suppress(OSError):
                forward.close()
        self._forwards.clear()


async def _relay(
    near_reader: asyncio.StreamReader,
    near_writer: asyncio.StreamWriter,
    far_reader: asyncio.StreamReader,
    far_writer: asyncio.StreamWriter,
) -> None:
    async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()

    # HTTP needs no half-close: when either side ends, the connection is over.
    ends = [
        asyncio.ensure_future(pump(near_reader, far_writer)),
        asyncio.ensure_future(pump(far_reader, near_writer)),
    ]
    try:
        await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for end in ends:
            end.cancel()
        with contextlib.suppress(OSError):
            far_writer.close()
