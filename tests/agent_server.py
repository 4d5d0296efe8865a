"""Run the real agent app (uvicorn, real HTTP on loopback) in a thread for a test."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn

from agent.api.app import create_app
from agent.logs import LastWords
from agent.services.node import NodeState
from agent.settings import Settings


class RunningAgent:
    def __init__(self, server: uvicorn.Server, app_node: NodeState, url: str) -> None:
        self.server = server
        self.node = app_node
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=10)

    def node_last_words(self) -> LastWords:
        words: LastWords = self.server.config.app.state.agent.last_words  # type: ignore[union-attr]
        return words

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        return self.http.get(path, **kwargs)  # type: ignore[arg-type]

    def wait_for(self, predicate, timeout: float = 10.0, interval: float = 0.02):  # type: ignore[no-untyped-def,unused-ignore]
        """Poll ``predicate(self)`` until it returns something truthy; return that."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = predicate(self)
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")


@contextmanager
def running_agent(settings: Settings) -> Iterator[RunningAgent]:
    if settings.auth_mode is None:
        # These tests look at what the agent serves; the door has tests/test_auth.py.
        settings = settings.model_copy(update={"auth_mode": "none"})
    node = NodeState(settings)
    app = create_app(settings, node)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="agent-under-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("agent did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    agent = RunningAgent(server, node, f"http://127.0.0.1:{port}")
    try:
        yield agent
    finally:
        agent.http.close()
        server.should_exit = True
        thread.join(10)


__all__ = ["RunningAgent", "running_agent"]
