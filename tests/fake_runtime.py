"""A container runtime held in memory, speaking the agent's ``RuntimeClient`` protocol.

``FakeRuntime`` keeps sandboxes and containers as the agent's own types; a test
runs, starts, exits and removes them and injects what a real runtime does
wrong: going away, a deadline hit, a call answered with an error, no event
stream (containerd 1.6, CRI-O without ``enable_pod_events``) or one that breaks
mid-way, a slow call. ``FakeRuntime.connect`` is a ``ClientFactory``: each
connection the node state makes gets its own ``FakeRuntimeClient``, as each
gets its own gRPC channel.

Errors are made by the real client's own mapping of gRPC status codes
(``map_grpc_error``), and the list calls leave out what only a status call
tells, so the node state sees what it would see from containerd or CRI-O.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import grpc
import grpc.aio

from agent.cri import CallUnimplemented, EventsUnsupported, RuntimeClient, map_grpc_error
from agent.domain.model import (
    Container,
    ContainerEvent,
    ContainerState,
    Mount,
    NamespacePath,
    PodRef,
    RuntimeInfo,
    RuntimeKind,
    Sandbox,
    SandboxState,
)
from agent.services.node import NodeState
from agent.settings import Settings

FAKE_ENDPOINT = "unix:///run/fake-runtime/cri.sock"
# No real process has a PID above the kernel's PID_MAX_LIMIT (2**22), so a
# pidfd opened on one of these finds nothing and the node state relies on relists.
FIRST_FAKE_PID = 2**22 + 1000

EventsMode = Literal["stream", "unimplemented", "silent"]
_POD_NAMESPACES = ("ipc", "uts", "net")


def grpc_error(
    code: grpc.StatusCode, method: str, details: str = "", *, endpoint: str
) -> Exception:
    """The agent error the real client raises when ``method`` ends with ``code``."""
    rpc = grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)
    return map_grpc_error(rpc, method, endpoint)


@dataclass(frozen=True, slots=True)
class Call:
    """One call a client made: the CRI method, the object it named, verbose or not."""

    method: str
    target: str | None = None
    verbose: bool | None = None


@dataclass(slots=True)
class _Fault:
    code: grpc.StatusCode
    details: str
    times: int


class FakeRuntime:
    """The runtime's side: what exists, what the next calls will do, who is listening."""

    def __init__(
        self,
        *,
        runtime_name: str = "containerd",
        runtime_version: str = "2.1.1",
        events: EventsMode = "stream",
        sandbox_metrics: bool = True,
    ) -> None:
        self.runtime_name = runtime_name
        self.runtime_version = runtime_version
        self.kind = RuntimeKind.from_runtime_name(runtime_name)
        self.events: EventsMode = events
        # False: ListPodSandboxMetrics answers UNIMPLEMENTED (containerd 1.6, 1.7).
        self.sandbox_metrics = sandbox_metrics
        self.sandboxes: dict[str, Sandbox] = {}
        self.containers: dict[str, Container] = {}
        self.images: set[str] = {"docker.io/library/busybox:latest"}
        self.calls: list[Call] = []
        self.clients: list[FakeRuntimeClient] = []
        self.calls_after_close = 0
        self._down: tuple[grpc.StatusCode, str] | None = None
        self._faults: dict[str, list[_Fault]] = {}
        self._delays: dict[str, float] = {}
        self._streams: set[asyncio.Queue[ContainerEvent | Exception]] = set()
        self._ids = itertools.count(1)
        self._pids = itertools.count(FIRST_FAKE_PID)

    # --- the ClientFactory

    def connect(self, endpoint: str, settings: Settings) -> RuntimeClient:
        """A new connection, with the call deadline the settings give."""
        client = FakeRuntimeClient(self, endpoint, settings.cri_timeout_seconds)
        self.clients.append(client)
        return client

    # --- what the calls say

    def status_calls(self, object_id: str) -> list[bool | None]:
        """The ``verbose`` flag of every status call made for ``object_id``, in order."""
        return [
            c.verbose
            for c in self.calls
            if c.target == object_id and c.method in ("PodSandboxStatus", "ContainerStatus")
        ]

    def count(self, method: str) -> int:
        """How many times ``method`` was called, on any connection."""
        return sum(1 for c in self.calls if c.method == method)

    @property
    def open_streams(self) -> int:
        """Event streams currently open."""
        return len(self._streams)

    # --- lifecycle, as kubelet drives it

    def _new_id(self, prefix: str) -> str:
        # Real IDs are 64 hex digits; prefixes keep sandboxes and containers apart.
        return f"{prefix}{next(self._ids):0{64 - len(prefix)}x}"

    def run_sandbox(
        self,
        name: str,
        namespace: str = "default",
        *,
        uid: str | None = None,
        attempt: int = 0,
        host_network: bool = False,
        pause_pid: int | None = None,
    ) -> Sandbox:
        """RunPodSandbox: a ready sandbox with its pause process."""
        sandbox_id = self._new_id("5b")
        pid = pause_pid if pause_pid is not None else next(self._pids)
        labels = {
            "io.kubernetes.pod.name": name,
            "io.kubernetes.pod.namespace": namespace,
            "io.kubernetes.pod.uid": uid or f"uid-{name}",
        }
        sandbox = Sandbox(
            id=sandbox_id,
            pod=PodRef(name=name, namespace=namespace, uid=uid or f"uid-{name}"),
            state=SandboxState.READY,
            attempt=attempt,
            created_at=_now(),
            runtime_handler="",
            labels=labels,
            ip=None if host_network else f"10.88.0.{len(self.sandboxes) + 2}",
            network_mode="node" if host_network else "pod",
            pause_pid=pid,
            network_namespace=None if host_network else f"/proc/{pid}/ns/net",
            namespaces=tuple(NamespacePath(ns, f"/proc/{pid}/ns/{ns}") for ns in _POD_NAMESPACES),
        )
        self.sandboxes[sandbox_id] = sandbox
        return sandbox

    def stop_sandbox(self, sandbox_id: str) -> Sandbox:
        """StopPodSandbox: its running containers are killed, the pause process goes."""
        for c in list(self.containers.values()):
            if c.sandbox_id == sandbox_id and c.state is ContainerState.RUNNING:
                self.exit_container(c.id, exit_code=137, reason="Error")
        sandbox = dataclasses.replace(
            self.sandboxes[sandbox_id],
            state=SandboxState.NOTREADY,
            pause_pid=None,
            ip=None,
            network_namespace=None,
        )
        self.sandboxes[sandbox_id] = sandbox
        return sandbox

    def remove_sandbox(self, sandbox_id: str) -> None:
        """RemovePodSandbox: the sandbox and every container in it."""
        for c in list(self.containers.values()):
            if c.sandbox_id == sandbox_id:
                self.remove_container(c.id)
        del self.sandboxes[sandbox_id]

    def create_container(
        self,
        sandbox_id: str,
        name: str,
        *,
        image: str = "docker.io/library/busybox:latest",
        attempt: int = 0,
    ) -> Container:
        """CreateContainer: a created container in ``sandbox_id``."""
        sandbox = self.sandboxes[sandbox_id]
        container_id = self._new_id("c0")
        container = Container(
            id=container_id,
            name=name,
            sandbox_id=sandbox_id,
            pod=sandbox.pod,
            state=ContainerState.CREATED,
            attempt=attempt,
            image=image,
            image_ref="sha256:" + "ab" * 32,
            created_at=_now(),
            labels={
                "io.kubernetes.pod.name": sandbox.pod.name,
                "io.kubernetes.pod.namespace": sandbox.pod.namespace,
                "io.kubernetes.pod.uid": sandbox.pod.uid,
                "io.kubernetes.container.name": name,
            },
            annotations={"io.kubernetes.container.restartCount": str(attempt)},
            log_path=(
                f"/var/log/pods/{sandbox.pod.namespace}_{sandbox.pod.name}_{sandbox.pod.uid}"
                f"/{name}/{attempt}.log"
            ),
        )
        self.containers[container_id] = container
        self._publish(container, "created")
        return container

    def start_container(
        self, container_id: str, *, pid: int | None = None, started_at: datetime | None = None
    ) -> Container:
        """StartContainer: running, with a main process."""
        pid = pid if pid is not None else next(self._pids)
        container = dataclasses.replace(
            self.containers[container_id],
            state=ContainerState.RUNNING,
            pid=pid,
            started_at=started_at or _now(),
            namespaces=(NamespacePath("pid", None), NamespacePath("net", f"/proc/{pid}/ns/net")),
            mounts=(Mount("/dev/termination-log", "/var/lib/kubelet/pods/x/termination"),),
        )
        self.containers[container_id] = container
        self._publish(container, "started")
        return container

    def run_container(self, sandbox_id: str, name: str, *, pid: int | None = None) -> Container:
        """Create and start, as kubelet does back to back."""
        created = self.create_container(sandbox_id, name)
        return self.start_container(created.id, pid=pid)

    def exit_container(
        self, container_id: str, *, exit_code: int = 0, reason: str | None = None
    ) -> Container:
        """The main process ended (or was killed): exited, with its code and reason."""
        before = self.containers[container_id]
        container = dataclasses.replace(
            before,
            state=ContainerState.EXITED,
            # Only CRI-O keeps reporting the PID after exit; the client drops it either way.
            pid=before.pid if self.kind is RuntimeKind.CRIO else None,
            finished_at=_now(),
            exit_code=exit_code,
            reason=reason or ("Completed" if exit_code == 0 else "Error"),
        )
        self.containers[container_id] = container
        self._publish(container, "stopped")
        return container

    def remove_container(self, container_id: str) -> None:
        """RemoveContainer."""
        container = self.containers.pop(container_id)
        self._publish(container, "deleted")

    def _publish(self, container: Container, kind: str) -> None:
        event = ContainerEvent(container.id, kind, container.sandbox_id, _now())
        for queue in self._streams:
            queue.put_nowait(event)

    # --- faults

    def go_away(
        self, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE, details: str = ""
    ) -> None:
        """The runtime stops answering: every call fails with ``code``, open streams break."""
        self._down = (code, details or "connection refused")
        self.break_event_streams(code, details or "connection refused")

    def come_back(self) -> None:
        """The runtime answers again (on new calls; broken streams stay broken)."""
        self._down = None

    def fail(
        self,
        method: str,
        code: grpc.StatusCode = grpc.StatusCode.INTERNAL,
        details: str = "injected failure",
        *,
        times: int = 1,
    ) -> None:
        """The next ``times`` calls of ``method`` end with ``code``."""
        self._faults.setdefault(method, []).append(_Fault(code, details, times))

    def slow(self, method: str, seconds: float) -> None:
        """Every call of ``method`` takes ``seconds``; past the deadline it fails as gRPC would."""
        if seconds <= 0:
            self._delays.pop(method, None)
        else:
            self._delays[method] = seconds

    def break_event_streams(
        self, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE, details: str = "stream reset"
    ) -> None:
        """Every open event stream fails with ``code`` after what it already holds."""
        for queue in self._streams:
            queue.put_nowait(
                grpc_error(code, "GetContainerEvents", details, endpoint=FAKE_ENDPOINT)
            )

    def _fault_for(self, method: str) -> _Fault | None:
        pending = self._faults.get(method)
        if not pending:
            return None
        fault = pending[0]
        fault.times -= 1
        if fault.times <= 0:
            pending.pop(0)
        return fault


class FakeRuntimeClient:
    """One connection to a ``FakeRuntime``: what the node state talks to."""

    def __init__(self, runtime: FakeRuntime, endpoint: str, timeout: float) -> None:
        self.runtime = runtime
        self.endpoint = endpoint
        self.timeout = timeout
        self.closed = False

    async def _enter(
        self,
        method: str,
        target: str | None = None,
        verbose: bool | None = None,
        *,
        deadline: bool = True,
    ) -> None:
        runtime = self.runtime
        runtime.calls.append(Call(method, target, verbose))
        if self.closed:
            runtime.calls_after_close += 1
            raise grpc_error(
                grpc.StatusCode.CANCELLED, method, "channel closed", endpoint=self.endpoint
            )
        self._raise_if_down(method)
        delay = runtime._delays.get(method, 0.0)
        if delay:
            if deadline and delay >= self.timeout:
                await asyncio.sleep(self.timeout)
                raise grpc_error(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    method,
                    "Deadline Exceeded",
                    endpoint=self.endpoint,
                )
            await asyncio.sleep(delay)
            # It may have gone away while the call was in flight.
            self._raise_if_down(method)
        fault = runtime._fault_for(method)
        if fault is not None:
            raise grpc_error(fault.code, method, fault.details, endpoint=self.endpoint)

    def _raise_if_down(self, method: str) -> None:
        if self.runtime._down is not None:
            code, details = self.runtime._down
            raise grpc_error(code, method, details, endpoint=self.endpoint)

    async def version(self) -> RuntimeInfo:
        """Version."""
        await self._enter("Version")
        runtime = self.runtime
        return RuntimeInfo(
            endpoint=self.endpoint,
            runtime_name=runtime.runtime_name,
            runtime_version=runtime.runtime_version,
            cri_api_version="v1",
            kind=runtime.kind,
        )

    async def list_sandboxes(self) -> list[Sandbox]:
        """ListPodSandbox: no PID, network or namespaces, as the list call gives them."""
        await self._enter("ListPodSandbox")
        return [_listed_sandbox(s) for s in self.runtime.sandboxes.values()]

    async def list_containers(self) -> list[Container]:
        """ListContainers: no PID, times, exit or log path, as the list call gives them."""
        await self._enter("ListContainers")
        return [_listed_container(c) for c in self.runtime.containers.values()]

    async def sandbox_status(self, sandbox_id: str, *, verbose: bool = True) -> Sandbox:
        """PodSandboxStatus; the pause PID and namespaces only when verbose."""
        await self._enter("PodSandboxStatus", sandbox_id, verbose)
        sandbox = self.runtime.sandboxes.get(sandbox_id)
        if sandbox is None:
            raise self._not_found("PodSandboxStatus", sandbox_id)
        if verbose:
            return sandbox
        return dataclasses.replace(sandbox, pause_pid=None, network_namespace=None, namespaces=())

    async def container_status(
        self, listed: Container, *, verbose: bool = True
    ) -> tuple[Container, bool]:
        """ContainerStatus; the PID, namespaces and mounts only when verbose."""
        await self._enter("ContainerStatus", listed.id, verbose)
        held = self.runtime.containers.get(listed.id)
        if held is None:
            raise self._not_found("ContainerStatus", listed.id)
        running = held.state is ContainerState.RUNNING
        pid = held.pid if verbose and running else None
        status = dataclasses.replace(
            held,
            pid=pid,
            namespaces=held.namespaces if verbose else (),
            mounts=held.mounts if verbose else (),
        )
        # Runtimes other than containerd may report a PID that outlived its process.
        needs_check = pid is not None and self.runtime.kind is not RuntimeKind.CONTAINERD
        return status, needs_check

    async def image_present(self, image: str) -> bool:
        """ImageStatus."""
        await self._enter("ImageStatus", image)
        return image in self.runtime.images

    async def container_events(self) -> AsyncIterator[ContainerEvent]:
        """GetContainerEvents, ending the way the real client's stream ends."""
        await self._enter("GetContainerEvents", deadline=False)
        runtime = self.runtime
        if runtime.events == "unimplemented":
            raise EventsUnsupported("runtime does not implement GetContainerEvents")
        if runtime.events == "silent":
            raise EventsUnsupported("runtime closed the container event stream without events")
        queue: asyncio.Queue[ContainerEvent | Exception] = asyncio.Queue()
        runtime._streams.add(queue)
        try:
            while True:
                item = await queue.get()
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            runtime._streams.discard(queue)

    async def list_pod_sandbox_metrics(self) -> int:
        """ListPodSandboxMetrics: one entry per ready sandbox, or UNIMPLEMENTED."""
        await self._enter("ListPodSandboxMetrics")
        if not self.runtime.sandbox_metrics:
            raise CallUnimplemented("ListPodSandboxMetrics", "method not implemented")
        return sum(1 for s in self.runtime.sandboxes.values() if s.state is SandboxState.READY)

    async def close(self) -> None:
        """Close the connection; later calls fail."""
        self.closed = True

    def _not_found(self, method: str, object_id: str) -> Exception:
        return grpc_error(
            grpc.StatusCode.NOT_FOUND,
            method,
            f'an error occurred when try to find "{object_id}": not found',
            endpoint=self.endpoint,
        )


def _listed_sandbox(sandbox: Sandbox) -> Sandbox:
    return dataclasses.replace(
        sandbox,
        ip=None,
        network_mode=None,
        pause_pid=None,
        pause_pid_note=None,
        network_namespace=None,
        namespaces=(),
    )


def _listed_container(container: Container) -> Container:
    return dataclasses.replace(
        container,
        started_at=None,
        finished_at=None,
        exit_code=None,
        reason=None,
        message=None,
        log_path=None,
        pid=None,
        namespaces=(),
        mounts=(),
    )


def _now() -> datetime:
    return datetime.now(UTC)


# --- driving a node state against a fake runtime


def fake_settings(**overrides: object) -> Settings:
    """Settings for a node state on a fake runtime: quick relists and reconnects."""
    values: dict[str, object] = {
        "node_name": "fake-node",
        "cri_endpoint": FAKE_ENDPOINT,
        "relist_interval_seconds": 0.05,
        "reconnect_min_seconds": 0.02,
        "reconnect_max_seconds": 0.1,
        "cri_timeout_seconds": 1.0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def running(node: NodeState) -> AsyncIterator[asyncio.Task[None]]:
    """Run the node state's refresh loop for the body of a ``async with``."""
    task = asyncio.create_task(node.run(), name="node-under-test")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(
    predicate: Callable[[], object], within: float = 5.0, what: str = "condition"
) -> None:
    """Wait until ``predicate()`` is truthy; fail the test after ``within`` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} not met within {within}s")
        await asyncio.sleep(0.005)
