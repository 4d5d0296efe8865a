"""The real way to each agent: a tunnel of port-forwards through the API server, TLS inside.

One tunnel and one HTTP client per node, made when the node is first asked
and kept until the command ends. The caller's token rides in every request's
``Authorization`` header; the port-forward is opened with the kubeconfig's
own credentials. The agent's certificate is checked against ``--agent-ca``
when given; otherwise the tunnel's far end is the pod the API server chose,
and TLS still keeps the token off the node's and the pod network's wire.

Imports ``cluster``, ``tunnel``, ``model``, ``fanout``, httpx and the standard library.
"""

from __future__ import annotations

import ssl

import httpx

from kubectl_podlens.cluster import Cluster, PortForwardRefused
from kubectl_podlens.fanout import AgentRefused
from kubectl_podlens.model import AgentPod, Reason
from kubectl_podlens.tunnel import Tunnel


class PortForwardLinks:
    """An HTTPS client per agent over its own tunnel."""

    def __init__(
        self, cluster: Cluster, token: str, timeout: float, agent_ca: str | None = None
    ) -> None:
        self._cluster = cluster
        self._token = token
        self._timeout = timeout
        self._verify: ssl.SSLContext | bool = False
        if agent_ca is not None:
            context = ssl.create_default_context(cafile=agent_ca)
            # The agent is reached on 127.0.0.1; its certificate names its pod, not that.
            context.check_hostname = False
            self._verify = context
        self._tunnels: dict[str, Tunnel] = {}
        self._clients: dict[str, httpx.AsyncClient] = {}
        self.forwards_opened = 0

    async def client(self, agent: AgentPod) -> httpx.AsyncClient:
        """The agent's client; the first call per node opens its tunnel."""
        found = self._clients.get(agent.node)
        if found is not None:
            return found

        def open_forward():  # type: ignore[no-untyped-def]
            self.forwards_opened += 1
            return self._cluster.forward(agent)

        tunnel = Tunnel(open_forward, self._timeout)
        self._tunnels[agent.node] = tunnel
        try:
            port = await tunnel.start()
        except PortForwardRefused as exc:
            if exc.status == 403:
                raise AgentRefused(
                    Reason.FORBIDDEN,
                    f"the API server refused the port-forward to {agent.namespace}/{agent.name}: "
                    f"you need get and create pods/portforward in namespace {agent.namespace}",
                ) from exc
            raise AgentRefused(
                Reason.UNREACHABLE, f"port-forward to {agent.name} failed: {exc.detail}"
            ) from exc
        except TimeoutError as exc:
            raise AgentRefused(
                Reason.TIMED_OUT, f"the port-forward to {agent.name} did not open in time"
            ) from exc
        client = httpx.AsyncClient(
            base_url=f"https://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {self._token}"},
            verify=self._verify,
            timeout=self._timeout,
        )
        self._clients[agent.node] = client
        return client

    def why_unreachable(self, agent: AgentPod) -> str | None:
        """The tunnel's last error (e.g. nothing listens on the agent's port)."""
        tunnel = self._tunnels.get(agent.node)
        return tunnel.last_error if tunnel is not None else None

    async def aclose(self) -> None:
        """Close every client, then every tunnel."""
        for client in self._clients.values():
            await client.aclose()
        for tunnel in self._tunnels.values():
            await tunnel.close()
        self._clients.clear()
        self._tunnels.clear()
