"""The asyncio CRI client: one channel, a deadline on every call, errors mapped once.

Part of the CRI adapter: imports its siblings, grpc, the CRI stubs, the domain model and
the errors.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import grpc.aio

from agent.cri import _convert
from agent.cri._endpoints import normalize_endpoint
from agent.cri._protocol import CallUnimplemented, EventsUnsupported
from agent.domain.model import (
    Container,
    ContainerEvent,
    RuntimeInfo,
    RuntimeKind,
    Sandbox,
)
from agent.errors import NotFound, RuntimeCallFailed, RuntimeUnavailable
from cri_proto import api_pb2, api_pb2_grpc

T = TypeVar("T")

# The runtime is on the same node; these codes mean "cannot reach it", not
# "it refused this request".
_UNREACHABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
}

# Verbose status messages can carry a whole OCI runtime spec; leave room.
_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# An event stream that ends with OK this soon, having sent nothing, is a
# runtime saying it has no events; later, it is a stream that broke.
_ENDED_AT_ONCE_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class RuntimeCondition:
    """One condition of the runtime's Status answer (RuntimeReady, NetworkReady)."""

    type: str
    status: bool
    reason: str
    message: str


def map_grpc_error(exc: grpc.aio.AioRpcError, method: str, endpoint: str) -> Exception:
    """The agent's error for a failed call: unreachable, not found, or refused."""
    code = exc.code()
    details = exc.details() or ""
    if code in _UNREACHABLE:
        return RuntimeUnavailable(
            f"container runtime at {endpoint} unreachable during {method}: "
            f"{code.name}: {details}".rstrip(": "),
            endpoint=endpoint,
            code=code.name,
        )
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(f"runtime: {details}", method=method)
    return RuntimeCallFailed(
        f"runtime answered {code.name} to {method}: {details}", code=code.name, method=method
    )


class CriClient:
    """Wraps the generated stubs; speaks the agent's types."""

    def __init__(self, endpoint: str, *, timeout: float, kind: RuntimeKind = RuntimeKind.OTHER):
        self.endpoint = normalize_endpoint(endpoint)
        self.timeout = timeout
        self.kind = kind
        self._channel = grpc.aio.insecure_channel(
            self.endpoint,
            options=[
                ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
                # Reconnect quickly once the runtime is back.
                ("grpc.initial_reconnect_backoff_ms", 200),
                ("grpc.max_reconnect_backoff_ms", 2000),
            ],
        )
        self._runtime = api_pb2_grpc.RuntimeServiceStub(self._channel)
        self._images = api_pb2_grpc.ImageServiceStub(self._channel)
        self._sandbox_memo: dict[str, tuple[int, Sandbox]] = {}
        self._container_memo: dict[str, tuple[int, Container]] = {}

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close()

    async def _call(self, method: str, call: Callable[..., Awaitable[T]], request: Any) -> T:
        try:
            return await call(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            raise map_grpc_error(exc, method, self.endpoint) from None

    # --- runtime identity and health

    async def version(self) -> RuntimeInfo:
        """The runtime's name and versions; picks the verbose-info dialect."""
        response: api_pb2.VersionResponse = await self._call(
            "Version", self._runtime.Version, api_pb2.VersionRequest(version="v1")
        )
        self.kind = RuntimeKind.from_runtime_name(response.runtime_name)
        return RuntimeInfo(
            endpoint=self.endpoint,
            runtime_name=response.runtime_name,
            runtime_version=response.runtime_version,
            cri_api_version=response.runtime_api_version,
            kind=self.kind,
        )

    async def status(self) -> list[RuntimeCondition]:
        """The runtime's own conditions."""
        response: api_pb2.StatusResponse = await self._call(
            "Status", self._runtime.Status, api_pb2.StatusRequest()
        )
        return [
            RuntimeCondition(c.type, c.status, c.reason, c.message)
            for c in response.status.conditions
        ]

    # --- inventory

    async def list_sandboxes(self) -> list[Sandbox]:
        """Every pod sandbox, as the list call gives it."""
        response: api_pb2.ListPodSandboxResponse = await self._call(
            "ListPodSandbox", self._runtime.ListPodSandbox, api_pb2.ListPodSandboxRequest()
        )
        # A relist where nothing changed converts nothing: items whose state is
        # what it was reuse the object made last time.
        memo, self._sandbox_memo = self._sandbox_memo, {}
        out = []
        for item in response.items:
            known = memo.get(item.id)
            if known is None or known[0] != item.state:
                known = (item.state, _convert.sandbox_from_list_item(item))
            self._sandbox_memo[item.id] = known
            out.append(known[1])
        return out

    async def list_containers(self) -> list[Container]:
        """Every container, as the list call gives it."""
        response: api_pb2.ListContainersResponse = await self._call(
            "ListContainers", self._runtime.ListContainers, api_pb2.ListContainersRequest()
        )
        memo, self._container_memo = self._container_memo, {}
        out = []
        for item in response.containers:
            known = memo.get(item.id)
            if known is None or known[0] != item.state:
                known = (item.state, _convert.container_from_list_item(item))
            self._container_memo[item.id] = known
            out.append(known[1])
        return out

    async def sandbox_status(self, sandbox_id: str, *, verbose: bool = True) -> Sandbox:
        """The sandbox's status; ``verbose`` adds the pause PID and namespaces."""
        response: api_pb2.PodSandboxStatusResponse = await self._call(
            "PodSandboxStatus",
            self._runtime.PodSandboxStatus,
            api_pb2.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id, verbose=verbose),
        )
        return _convert.sandbox_from_status(response, self.kind)

    async def container_status(
        self, listed: Container, *, verbose: bool = True
    ) -> tuple[Container, bool]:
        """The container's status; ``verbose`` adds its PID, namespaces and mounts."""
        response: api_pb2.ContainerStatusResponse = await self._call(
            "ContainerStatus",
            self._runtime.ContainerStatus,
            api_pb2.ContainerStatusRequest(container_id=listed.id, verbose=verbose),
        )
        return _convert.container_from_status(response, self.kind, listed)

    async def image_present(self, image: str) -> bool:
        """Whether the node holds ``image``."""
        response: api_pb2.ImageStatusResponse = await self._call(
            "ImageStatus",
            self._images.ImageStatus,
            api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=image)),
        )
        return response.HasField("image") and bool(response.image.id)

    async def container_events(self) -> AsyncIterator[ContainerEvent]:
        """Stream container events; raise EventsUnsupported where the runtime has none.

        No deadline here on purpose: the stream lives as long as the agent.
        """
        loop = asyncio.get_running_loop()
        opened = loop.time()
        call = self._runtime.GetContainerEvents(api_pb2.GetEventsRequest())
        received = False
        try:
            message: api_pb2.ContainerEventResponse
            async for message in call:
                received = True
                yield _convert.event_from_message(message)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                raise EventsUnsupported("runtime does not implement GetContainerEvents") from None
            raise map_grpc_error(exc, "GetContainerEvents", self.endpoint) from None
        finally:
            call.cancel()
        # CRI-O without enable_pod_events ends the stream at once with OK. One
        # that ran a while and then ended (CRI-O shutting down) was a working
        # stream that broke.
        if not received and loop.time() - opened < _ENDED_AT_ONCE_SECONDS:
            raise EventsUnsupported(
                "runtime ended the container event stream at once without events "
                "(CRI-O does so unless enable_pod_events is on)"
            )
        raise RuntimeUnavailable(
            "container event stream ended", endpoint=self.endpoint, method="GetContainerEvents"
        )

    async def list_pod_sandbox_metrics(self) -> int:
        """How many pod sandboxes the runtime reports metrics for; CallUnimplemented if none."""
        try:
            response: api_pb2.ListPodSandboxMetricsResponse = (
                await self._runtime.ListPodSandboxMetrics(
                    api_pb2.ListPodSandboxMetricsRequest(), timeout=self.timeout
                )
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                raise CallUnimplemented("ListPodSandboxMetrics", exc.details() or "") from None
            raise map_grpc_error(exc, "ListPodSandboxMetrics", self.endpoint) from None
        return len(response.pod_metrics)
