"""The API server, through the official Kubernetes client: the only module that imports it.

What the plugin asks the API server: the agents (pods by label in the agent's
namespace), the nodes, where a pod runs, which pods match a label selector,
whether the caller may port-forward, a TokenRequest for audience ``podlens``,
and the port-forwards themselves. Library objects stop here: callers get
``AgentPod``, strings and sockets. Every call carries the deadline the
command was given; API errors become the plugin's own errors, naming the
permission that is missing.

Imports ``model``, ``errors``, the ``kubernetes`` client and the standard library.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from kubernetes.stream import portforward
from urllib3.exceptions import HTTPError as TransportError

from kubectl_podlens.errors import ApiUnavailable, MissingPermission, NotFound, PluginError
from kubectl_podlens.model import TOKEN_AUDIENCE, AgentPod

AGENT_PORT_NAME = "https"
AGENT_DEFAULT_PORT = 8470
# The shortest lifetime the API server grants a requested token.
TOKEN_SECONDS = 600

_HANDSHAKE_STATUS = re.compile(r"Handshake status (\d{3})")


@dataclass(frozen=True, slots=True)
class Connection:
    """Where the API server is and who the caller is, from the kubeconfig."""

    kubeconfig: str | None
    context: str | None
    timeout: float


class Cluster:
    """The API server as the caller's kubeconfig reaches it."""

    def __init__(self, connection: Connection) -> None:
        self._timeout = connection.timeout
        self._config = k8s.Configuration()
        try:
            _untyped(k8s_config.load_kube_config)(
                config_file=connection.kubeconfig,
                context=connection.context,
                client_configuration=self._config,
                persist_config=False,
            )
            _, active = _untyped(k8s_config.list_kube_config_contexts)(
                config_file=connection.kubeconfig
            )
            contexts, _ = _untyped(k8s_config.list_kube_config_contexts)(
                config_file=connection.kubeconfig
            )
        except (ConfigException, OSError, TypeError) as exc:
            raise PluginError(f"cannot use the kubeconfig: {exc}") from exc
        chosen = active
        if connection.context is not None:
            chosen = next((c for c in contexts if c.get("name") == connection.context), active)
        self.default_namespace = str(
            ((chosen or {}).get("context") or {}).get("namespace") or "default"
        )
        # The client's models type every field Optional; what the API server
        # must fill is read as it comes (Any), and a missing one fails loudly.
        self._api: Any = k8s.ApiClient(self._config)
        self._core: Any = k8s.CoreV1Api(self._api)
        self._authz: Any = k8s.AuthorizationV1Api(self._api)

    def close(self) -> None:
        """Release the client's connection pool."""
        self._api.close()

    # ------------------------------------------------------------ who the caller is

    @property
    def bearer_token(self) -> str | None:
        """The kubeconfig's bearer token (a token, a token file, an exec plugin's), if any."""
        value = self._config.api_key.get("authorization") or self._config.api_key.get("BearerToken")
        if not value:
            return None
        text = str(value)
        return text.split(" ", 1)[1] if text.lower().startswith("bearer ") else text

    def request_token(self, namespace: str, name: str) -> str:
        """A token of ServiceAccount ``namespace/name`` for audience ``podlens`` (TokenRequest)."""
        body = k8s.AuthenticationV1TokenRequest(
            spec=k8s.V1TokenRequestSpec(
                audiences=[TOKEN_AUDIENCE], expiration_seconds=TOKEN_SECONDS
            )
        )
        try:
            answer = self._core.create_namespaced_service_account_token(
                name, namespace, body, _request_timeout=self._timeout
            )
        except ApiException as exc:
            if exc.status == 403:
                raise MissingPermission(
                    "create",
                    "serviceaccounts/token",
                    namespace,
                    f"a token for ServiceAccount {namespace}/{name}, audience {TOKEN_AUDIENCE}",
                ) from exc
            if exc.status == 404:
                raise NotFound(f"no ServiceAccount {namespace}/{name}") from exc
            raise _api_error(exc, f"requesting a token for {namespace}/{name}") from exc
        except (OSError, TransportError) as exc:
            raise _unavailable(exc) from exc
        return str(answer.status.token)

    def may(self, verb: str, resource: str, subresource: str, namespace: str) -> bool:
        """The API server's SelfSubjectAccessReview: may the caller do this?"""
        review = k8s.V1SelfSubjectAccessReview(
            spec=k8s.V1SelfSubjectAccessReviewSpec(
                resource_attributes=k8s.V1ResourceAttributes(
                    verb=verb, resource=resource, subresource=subresource, namespace=namespace
                )
            )
        )
        try:
            answer = self._authz.create_self_subject_access_review(
                review, _request_timeout=self._timeout
            )
        except ApiException as exc:
            raise _api_error(exc, "asking whether you may port-forward") from exc
        except (OSError, TransportError) as exc:
            raise _unavailable(exc) from exc
        return bool(answer.status.allowed)

    # ------------------------------------------------------------ what runs where

    def agents(self, namespace: str, selector: str) -> list[AgentPod]:
        """The agent pods a DaemonSet controls: one per node where it runs."""
        try:
            pods = self._core.list_namespaced_pod(
                namespace, label_selector=selector, _request_timeout=self._timeout
            )
        except ApiException as exc:
            if exc.status == 403:
                raise MissingPermission(
                    "list", "pods", namespace, "to find the agents by their label"
                ) from exc
            raise _api_error(exc, f"listing the agents in {namespace}") from exc
        except (OSError, TransportError) as exc:
            raise _unavailable(exc) from exc
        found = []
        for pod in pods.items:
            if not pod.spec.node_name or pod.metadata.deletion_timestamp is not None:
                continue
            # Tokens go to the agents: only to pods a DaemonSet controls, not to
            # any pod that carries the label.
            if not any(
                ref.controller and ref.kind == "DaemonSet"
                for ref in pod.metadata.owner_references or []
            ):
                continue
            found.append(_agent_pod(pod))
        return found

    def nodes(self) -> list[str] | None:
        """Every node's name; None when the caller may not list nodes."""
        try:
            nodes = self._core.list_node(_request_timeout=self._timeout)
        except ApiException as exc:
            if exc.status == 403:
                return None
            raise _api_error(exc, "listing the nodes") from exc
        except (OSError, TransportError) as exc:
            raise _unavailable(exc) from exc
        return sorted(str(n.metadata.name) for n in nodes.items)

    def node_of(self, namespace: str, name: str) -> str:
        """The node that runs pod ``namespace/name``."""
        try:
            pod = self._core.read_namespaced_pod(name, namespace, _request_timeout=self._timeout)
        except ApiException as exc:
            if exc.status == 404:
                raise NotFound(f'pod "{name}" not found in namespace {namespace}') from exc
            if exc.status == 403:
                raise MissingPermission(
                    "get", "pods", namespace, f"to find the node of pod {name}"
                ) from exc
            raise _api_error(exc, f"reading pod {namespace}/{name}") from exc
        except (OSError, TransportError) as exc:
            raise _unavailable(exc) from exc
        if not pod.spec.node_name:
            raise NotFound(f"pod {namespace}/{name} is not scheduled to a node yet")
        return str(pod.spec.node_name)

    def matching_pods(self, namespace: str | None, selector: str) -> set[tuple[str, str]]:
        """``(namespace, name)`` of the pods a label selector picks (None: every namespace)."""
        try:
            if namespace is None:
                pods = self._core.list_pod_for_all_namespaces(
                    label_selector=selector, _request_timeout=self._timeout
                )
            else:
                pods = self._core.list_namespaced_pod(
                    namespace, label_selector=selector, _request_timeout=self._timeout
                )
        except ApiException as exc:
            if exc.status == 403:
                raise MissingPermission(
                    "list", "pods", namespace, "to apply the label selector"
                ) from exc
            raise _api_error(exc, f"listing pods matching {selector}") from exc
        except (OSError, TransportError) as exc:
            raise _unavailable(exc) from exc
        return {(str(p.metadata.namespace), str(p.metadata.name)) for p in pods.items}

    # ------------------------------------------------------------ port-forward

    def forward(self, agent: AgentPod) -> Forward:
        """A new port-forward to the agent's port, whose socket's bytes reach the agent.

        Raises ``PortForwardRefused`` with the API server's status when the
        tunnel cannot be opened (403: no ``pods/portforward``).
        """
        try:
            tunnel = portforward(
                self._core.connect_get_namespaced_pod_portforward,
                agent.name,
                agent.namespace,
                ports=str(agent.port),
                _request_timeout=self._timeout,
            )
        except ApiException as exc:
            found = _HANDSHAKE_STATUS.search(str(exc.reason or exc))
            status = int(found.group(1)) if found else exc.status
            raise PortForwardRefused(status, str(exc.reason or exc).strip()) from exc
        except Exception as exc:
            # websocket-client raises its own errors (bad handshake, refused); all mean
            # the same to the caller: this node's tunnel did not open.
            found = _HANDSHAKE_STATUS.search(str(exc))
            raise PortForwardRefused(int(found.group(1)) if found else 0, str(exc)) from exc
        return Forward(tunnel, agent.port)


class Forward:
    """One open port-forward: a socket for asyncio, and the tunnel's error channel."""

    def __init__(self, tunnel: Any, port: int) -> None:
        self._tunnel = tunnel
        self._port = port
        # The library hands out a wrapper of its socket pair's end; asyncio
        # wants a socket itself: a duplicate of it, closed with the tunnel.
        wrapped = tunnel.socket(port)
        self.sock = socket.fromfd(wrapped.fileno(), socket.AF_UNIX, socket.SOCK_STREAM)

    @property
    def error(self) -> str | None:
        """What the API server's error channel said about this port (e.g. connection refused)."""
        text = self._tunnel.error(self._port)
        return str(text).strip() if text else None

    def close(self) -> None:
        """End the tunnel: the library's relay thread stops once its end is closed."""
        self.sock.close()
        self._tunnel.close()


class PortForwardRefused(Exception):
    """The API server did not open a port-forward; ``status`` is its HTTP status (0: none)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _untyped(function: Any) -> Any:
    return function


def _agent_pod(pod: Any) -> AgentPod:
    ready = False
    because = f"phase {pod.status.phase}" if pod.status else "no status"
    for condition in (pod.status.conditions if pod.status else None) or []:
        if condition.type == "Ready":
            ready = condition.status == "True"
            if not ready:
                because = condition.message or condition.reason or "Ready is False"
    port = AGENT_DEFAULT_PORT
    image = ""
    for container in pod.spec.containers or []:
        for p in container.ports or []:
            if p.name == AGENT_PORT_NAME:
                port = int(p.container_port)
                image = str(container.image or "")
    if not image and pod.spec.containers:
        image = str(pod.spec.containers[0].image or "")
    return AgentPod(
        node=str(pod.spec.node_name),
        namespace=str(pod.metadata.namespace),
        name=str(pod.metadata.name),
        ready=ready,
        not_ready_because="" if ready else because,
        port=port,
        image=image,
    )


def _api_error(exc: ApiException, doing: str) -> PluginError:
    return PluginError(f"{doing}: the API server answered {exc.status} {exc.reason}")


def _unavailable(exc: Exception) -> ApiUnavailable:
    return ApiUnavailable(f"the API server did not answer: {exc}")
