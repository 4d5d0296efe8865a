"""One node's agent over HTTP: what the plugin asks it, and what its answers mean.

``Links`` gives an HTTP client per node (the real one tunnels through
port-forwards, see ``links``; tests give in-process transports). A client is
made once per node and kept for the command, so every question to a node
after the first reuses its connection. Answers are parsed into the agent's
own wire models (``agent.api.schemas``); a status that is no answer becomes
``AgentRefused`` with the reason a person needs (401, 403, not ready, ...).

Imports ``model``, ``fanout`` (``AgentRefused``), ``agent.api.schemas``, httpx,
pydantic and the standard library.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from kubectl_podlens.fanout import AgentRefused
from kubectl_podlens.model import AgentPod, Reason

M = TypeVar("M", bound=BaseModel)

# Far above any agent's answer (the agent caps its own responses).
MAX_ANSWER_BYTES = 64 << 20


class Links(Protocol):
    """An HTTP client per agent, kept for the whole command."""

    async def client(self, agent: AgentPod) -> httpx.AsyncClient:
        """The agent's client (made on first use); raises ``AgentRefused`` if it cannot be."""

    def why_unreachable(self, agent: AgentPod) -> str | None:
        """What the way to the agent said when it broke, if anything."""

    async def aclose(self) -> None:
        """Close every client and tunnel."""


class AgentApi:
    """The questions the plugin asks agents, over ``links``."""

    def __init__(self, links: Links, max_answer_bytes: int = MAX_ANSWER_BYTES) -> None:
        self.links = links
        # One node's answer is held whole while it is parsed: a node (or
        # whatever answers in its agent's pod) cannot make it unbounded.
        self.max_answer_bytes = max_answer_bytes

    async def get(self, agent: AgentPod, path: str, model: type[M]) -> M:
        """GET ``path`` from the agent as JSON, parsed as ``model``."""
        answer = await self._send(agent, "GET", path, headers={"Accept": "application/json"})
        return _parse(agent, answer, model)

    async def get_text(self, agent: AgentPod, path: str) -> str:
        """GET ``path`` as the agent renders it for a terminal."""
        answer = await self._send(agent, "GET", path, headers={"Accept": "text/plain"})
        return answer.text

    async def post(self, agent: AgentPod, path: str, body: dict[str, Any], model: type[M]) -> M:
        """POST a JSON body; the answer parsed as ``model``."""
        answer = await self._send(agent, "POST", path, json_body=body)
        return _parse(agent, answer, model)

    async def events(
        self, agent: AgentPod, path: str, read_timeout: float
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """A server-sent event stream: ``(event, data)`` as each arrives."""
        client = await self.links.client(agent)
        timeout = httpx.Timeout(client.timeout.connect, read=read_timeout)
        try:
            async with client.stream(
                "GET", path, headers={"Accept": "text/event-stream"}, timeout=timeout
            ) as answer:
                if answer.status_code != 200:
                    await answer.aread()
                    _refuse(agent, answer)
                event = "message"
                async for line in answer.aiter_lines():
                    if line.startswith("event:"):
                        event = line.split(":", 1)[1].strip()
                    elif line.startswith("data:"):
                        yield event, json.loads(line.split(":", 1)[1])
                    elif not line:
                        event = "message"
        except httpx.TimeoutException as exc:
            raise AgentRefused(
                Reason.TIMED_OUT, f"no event for {read_timeout:g}s ({type(exc).__name__})"
            ) from exc
        except httpx.TransportError as exc:
            raise self._unreachable(agent, exc) from exc

    async def _send(
        self,
        agent: AgentPod,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        json_body: dict[str, Any] | None = None,
    ) -> httpx.Response:
        client = await self.links.client(agent)
        try:
            request = client.build_request(method, path, headers=headers, json=json_body)
            answer = await client.send(request, stream=True)
            try:
                body = bytearray()
                async for chunk in answer.aiter_bytes():
                    body += chunk
                    if len(body) > self.max_answer_bytes:
                        raise AgentRefused(
                            Reason.FAILED,
                            f"answer larger than {self.max_answer_bytes >> 10} KiB: not read",
                        )
            finally:
                await answer.aclose()
            answer = httpx.Response(
                answer.status_code, headers=answer.headers, content=bytes(body), request=request
            )
        except httpx.TimeoutException as exc:
            raise AgentRefused(
                Reason.TIMED_OUT, f"the agent did not answer ({type(exc).__name__})"
            ) from exc
        except httpx.TransportError as exc:
            raise self._unreachable(agent, exc) from exc
        if answer.status_code >= 300:
            _refuse(agent, answer)
        return answer

    def _unreachable(self, agent: AgentPod, exc: Exception) -> AgentRefused:
        said = self.links.why_unreachable(agent)
        detail = f"{type(exc).__name__}: {exc}" + (f" (port-forward: {said})" if said else "")
        return AgentRefused(Reason.UNREACHABLE, detail)


def _message(answer: httpx.Response) -> str:
    try:
        body = answer.json()
    except ValueError:
        return answer.text[:200].strip() or answer.reason_phrase
    if isinstance(body, dict):
        return str(body.get("message") or body.get("detail") or body)[:300]
    return str(body)[:300]


_REASONS: dict[int, Reason] = {
    401: Reason.UNAUTHORIZED,
    403: Reason.FORBIDDEN,
    503: Reason.NOT_READY,
}

_HINTS: dict[int, str] = {
    401: " (the agent takes tokens for audience podlens: use --as-serviceaccount NS/NAME, "
    "or --token from `kubectl create token NAME --audience podlens`)",
}


def _refuse(agent: AgentPod, answer: httpx.Response) -> None:
    status = answer.status_code
    reason = _REASONS.get(status, Reason.FAILED)
    raise AgentRefused(reason, f"HTTP {status}: {_message(answer)}{_HINTS.get(status, '')}")


def _parse(agent: AgentPod, answer: httpx.Response, model: type[M]) -> M:
    try:
        return model.model_validate_json(answer.content)
    except ValidationError as exc:
        errors = exc.errors()
        where = f"{errors[0]['loc']} {errors[0]['msg']}" if errors else str(exc)
        raise AgentRefused(
            Reason.FAILED,
            f"answer not understood (agent {agent.image or 'of unknown version'}): {where}",
        ) from exc


LinkFactory = Callable[[AgentPod], httpx.AsyncClient]


class TransportLinks:
    """Links over given transports, one client per node: for tests and simulations."""

    def __init__(self, make_transport: Callable[[AgentPod], httpx.AsyncBaseTransport]) -> None:
        self._make = make_transport
        self._clients: dict[str, httpx.AsyncClient] = {}
        self.made = 0

    async def client(self, agent: AgentPod) -> httpx.AsyncClient:
        """The node's client, made once."""
        found = self._clients.get(agent.node)
        if found is None:
            self.made += 1
            found = httpx.AsyncClient(
                transport=self._make(agent), base_url=f"https://{agent.node}", timeout=30.0
            )
            self._clients[agent.node] = found
        return found

    def why_unreachable(self, agent: AgentPod) -> str | None:
        """Transports carry their own errors."""
        return None

    async def aclose(self) -> None:
        """Close every client."""
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
