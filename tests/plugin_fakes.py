"""In-process agents and API server for the plugin's unit tests and the fan-out bench.

Each fake agent answers over an httpx transport with the agent's own wire
models (``agent.api.schemas``), so what the plugin parses is what a real
agent sends; faults are injected per node: a delay, an HTTP status (401,
403, 503) with the agent's error body, or a closed connection.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from agent.api.schemas import (
    ApiSection,
    Capabilities,
    Counts,
    FindingItem,
    ItemList,
    NodeDiagnostics,
    NodeInfo,
    PodViewItem,
    RuntimeSection,
)
from kubectl_podlens.agents import AgentApi, TransportLinks
from kubectl_podlens.errors import NotFound
from kubectl_podlens.model import AgentPod

AGENT_NS = "podlens-system"


def pod_item(node: str, namespace: str, name: str, status: str = "Running") -> PodViewItem:
    return PodViewItem(
        namespace=namespace,
        name=name,
        uid=f"uid-{node}-{name}",
        status=status,
        ready="1/1" if status == "Running" else "0/1",
        restarts="0",
        phase="Running",
        api="ok",
        api_known=True,
        node_name=node,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        sandboxes=[],
        containers=[],
        mismatches=[],
        volumes=[],
    )


def finding(namespace: str, pod: str, severity: str, rule: str) -> FindingItem:
    return FindingItem(
        rule=rule,
        severity=severity,  # type: ignore[arg-type]
        namespace=namespace,
        pod=pod,
        container="app",
        summary=f"{rule} in {pod}",
        evidence=[],
        cause="because",
        next_steps=[],
        since=None,
    )


def node_info(node: str) -> dict[str, object]:
    """/v1/node as an agent answers it, built from the wire model."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return NodeInfo(
        node_name=node,
        runtime=RuntimeSection(
            connected=True,
            since=now,
            reason=None,
            endpoint="unix:///run/containerd/containerd.sock",
            name="containerd",
            version="1.6.20",
            cri_api_version="v1",
        ),
        api=ApiSection(state="ok", detail="ok", since=now, pods_on_node=1),
        capabilities=Capabilities(
            change_source="relist",
            change_source_reason=None,
            relist_interval_seconds=1.0,
            event_stream_breaks=0,
            optional_calls={},
            pidfd_exit_notifications=True,
            pidfd_unavailable=None,
            pause_processes="always",
        ),
        counts=Counts(
            sandboxes=1,
            sandboxes_ready=1,
            containers=1,
            containers_running=1,
            containers_exited=0,
            pods=1,
        ),
        snapshot_version=1,
        snapshot_taken_at=now,
    ).model_dump(mode="json")


@dataclass
class FakeAgent:
    """One node's agent: its pods and findings, and the fault to answer with."""

    node: str
    pods: list[PodViewItem] = field(default_factory=list)
    findings: list[FindingItem] = field(default_factory=list)
    delay: float = 0.0
    status: int | None = None
    drop: bool = False
    requests: list[str] = field(default_factory=list)
    # Set by the fleet: requests in flight across every agent.
    fleet: Fleet | None = None

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(f"{request.method} {request.url.path}")
        fleet = self.fleet
        if fleet is not None:
            fleet.in_flight += 1
            fleet.most_in_flight = max(fleet.most_in_flight, fleet.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.drop:
                raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
            if self.status is not None:
                body = {"error": "refused", "message": f"injected {self.status} on {self.node}"}
                return httpx.Response(self.status, json=body)
            return self.answer(request)
        finally:
            if fleet is not None:
                fleet.in_flight -= 1

    def answer(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/pods":
            namespace = request.url.params.get("namespace")
            items = [p for p in self.pods if namespace is None or p.namespace == namespace]
            if request.url.params.get("problems") == "true":
                items = [p for p in items if p.status != "Running"]
            return _json(ItemList[PodViewItem](items=items).model_dump(mode="json"))
        if path == "/v1/diagnostics":
            body = NodeDiagnostics(
                node_name=self.node,
                pods_checked=len(self.pods),
                pods_with_findings=len({f.pod for f in self.findings}),
                items=self.findings,
            )
            return _json(body.model_dump(mode="json"))
        if path == "/v1/node" and request.headers.get("accept") == "text/plain":
            return httpx.Response(200, text=f"Node:            {self.node}\n")
        if path == "/v1/node":
            return _json(node_info(self.node))
        if path.startswith("/v1/pods/"):
            _, _, _, namespace, name = path.split("/", 4)
            for p in self.pods:
                if (p.namespace, p.name) == (namespace, name):
                    if request.headers.get("accept") == "text/plain":
                        return httpx.Response(200, text=f"Pod: {namespace}/{name} on {self.node}")
                    return _json(p.model_dump(mode="json"))
            return httpx.Response(404, json={"error": "not_found", "message": "no such pod"})
        return httpx.Response(404, json={"error": "not_found", "message": path})


def _json(body: object) -> httpx.Response:
    return httpx.Response(
        200, content=json.dumps(body), headers={"content-type": "application/json"}
    )


@dataclass
class Fleet:
    """Agents by node, and the API server that lists them."""

    by_node: dict[str, FakeAgent]
    # Nodes with no agent pod, and agent pods the API server says are not ready.
    without_agent: Sequence[str] = ()
    not_ready: Sequence[str] = ()
    default_namespace: str = "default"
    in_flight: int = 0
    most_in_flight: int = 0
    # Where each pod runs, as the API server says.
    placements: dict[tuple[str, str], str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for agent in self.by_node.values():
            agent.fleet = self
            for p in agent.pods:
                self.placements[(p.namespace, p.name)] = agent.node

    # ------------------------------------------------------------ the API server

    def agents_of(self) -> list[AgentPod]:
        return [
            AgentPod(
                node=node,
                namespace=AGENT_NS,
                name=f"podlens-agent-{node}",
                ready=node not in self.not_ready,
                not_ready_because="" if node not in self.not_ready else "containers not ready",
                port=8470,
                image="podlens:0.1.0",
            )
            for node in self.by_node
        ]

    def agents(self, namespace: str, selector: str) -> list[AgentPod]:
        return self.agents_of()

    def nodes(self) -> list[str] | None:
        return sorted([*self.by_node, *self.without_agent])

    def node_of(self, namespace: str, name: str) -> str:
        node = self.placements.get((namespace, name))
        if node is None:
            raise NotFound(f'pod "{name}" not found in namespace {namespace}')
        return node

    def matching_pods(self, namespace: str | None, selector: str) -> set[tuple[str, str]]:
        wanted = selector.split("=", 1)[1]
        return {(ns, n) for (ns, n) in self.placements if n.startswith(wanted)}

    # ------------------------------------------------------------ the agents

    def links(self) -> TransportLinks:
        return TransportLinks(lambda agent: httpx.MockTransport(self.by_node[agent.node].handle))

    def api(self) -> AgentApi:
        return AgentApi(self.links())
