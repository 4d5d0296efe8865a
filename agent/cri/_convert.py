"""Protobuf messages -> the agent's own types. Nothing above agent.cri sees a message.

Part of the CRI adapter: imports ``verbose``, the CRI stubs and the domain model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime

from agent.cri.verbose import network_namespace_path, parse_container_info, parse_sandbox_info
from agent.domain.model import (
    Container,
    ContainerEvent,
    ContainerState,
    PodRef,
    RuntimeKind,
    Sandbox,
    SandboxState,
)
from cri_proto import api_pb2

POD_NAME_LABEL = "io.kubernetes.pod.name"
POD_NAMESPACE_LABEL = "io.kubernetes.pod.namespace"
POD_UID_LABEL = "io.kubernetes.pod.uid"
CONTAINER_NAME_LABEL = "io.kubernetes.container.name"

_CONTAINER_STATES = {
    0: ContainerState.CREATED,
    1: ContainerState.RUNNING,
    2: ContainerState.EXITED,
    3: ContainerState.UNKNOWN,
}
_NAMESPACE_MODES = {0: "pod", 1: "container", 2: "node", 3: "target"}
_EVENT_TYPES = {0: "created", 1: "started", 2: "stopped", 3: "deleted"}


def timestamp(nanos: int) -> datetime | None:
    """CRI timestamps are nanoseconds since the epoch; 0 means 'not set'."""
    if nanos <= 0:
        return None
    return datetime.fromtimestamp(nanos / 1e9, tz=UTC)


def _pod_ref(metadata: api_pb2.PodSandboxMetadata | None, labels: Mapping[str, str]) -> PodRef:
    # Sandbox metadata is authoritative; containers carry the pod only in labels.
    if metadata is not None:
        return PodRef(name=metadata.name, namespace=metadata.namespace, uid=metadata.uid)
    return PodRef(
        name=labels.get(POD_NAME_LABEL, ""),
        namespace=labels.get(POD_NAMESPACE_LABEL, ""),
        uid=labels.get(POD_UID_LABEL, ""),
    )


def sandbox_from_list_item(item: api_pb2.PodSandbox) -> Sandbox:
    """A ListPodSandbox item; status-only fields (PID, network) stay unset."""
    return Sandbox(
        id=item.id,
        pod=_pod_ref(item.metadata, item.labels),
        state=SandboxState.READY if item.state == 0 else SandboxState.NOTREADY,
        attempt=item.metadata.attempt,
        created_at=timestamp(item.created_at),
        runtime_handler=item.runtime_handler,
        labels=dict(item.labels),
        annotations=dict(item.annotations),
    )


def container_from_list_item(item: api_pb2.Container) -> Container:
    """A ListContainers item; status-only fields (PID, times, exit) stay unset."""
    labels = dict(item.labels)
    return Container(
        id=item.id,
        name=item.metadata.name or labels.get(CONTAINER_NAME_LABEL, ""),
        sandbox_id=item.pod_sandbox_id,
        pod=_pod_ref(None, labels),
        state=_CONTAINER_STATES.get(item.state, ContainerState.UNKNOWN),
        attempt=item.metadata.attempt,
        image=item.image.image,
        image_ref=item.image_ref,
        created_at=timestamp(item.created_at),
        labels=labels,
        annotations=dict(item.annotations),
    )


def sandbox_from_status(response: api_pb2.PodSandboxStatusResponse, kind: RuntimeKind) -> Sandbox:
    """A PodSandboxStatus answer, with what its verbose info says read in ``kind``'s dialect."""
    status = response.status
    ready = status.state == 0
    base = Sandbox(
        id=status.id,
        pod=_pod_ref(status.metadata, status.labels),
        state=SandboxState.READY if ready else SandboxState.NOTREADY,
        attempt=status.metadata.attempt,
        created_at=timestamp(status.created_at),
        runtime_handler=status.runtime_handler,
        labels=dict(status.labels),
        annotations=dict(status.annotations),
    )
    verbose = parse_sandbox_info(kind, dict(response.info), ready)
    network_mode: str | None = None
    if status.HasField("linux") and status.linux.HasField("namespaces"):
        network_mode = _NAMESPACE_MODES.get(status.linux.namespaces.options.network)
    ip = status.network.ip if status.HasField("network") and status.network.ip else None
    return dataclasses.replace(
        base,
        ip=ip,
        network_mode=network_mode,
        pause_pid=verbose.pid,
        pause_pid_note=verbose.pid_note,
        # CRI-O's spec of a host-network pod without an infra process still
        # names a pinned network namespace; the pod does not use it.
        network_namespace=None if network_mode == "node" else network_namespace_path(verbose),
        namespaces=verbose.namespaces,
    )


def container_from_status(
    response: api_pb2.ContainerStatusResponse, kind: RuntimeKind, listed: Container
) -> tuple[Container, bool]:
    """Merge a ContainerStatus answer into what the list call gave.

    The flag says whether the PID must be checked against the process start
    time before it is trusted (CRI-O keeps a stale PID after exit).
    """
    status = response.status
    state = _CONTAINER_STATES.get(status.state, ContainerState.UNKNOWN)
    verbose = parse_container_info(kind, dict(response.info), state)
    exited = state == ContainerState.EXITED
    merged = dataclasses.replace(
        listed,
        state=state,
        # ListContainers may name the image by ID; the status names what was asked for.
        image=status.image.image
        if status.HasField("image") and status.image.image
        else listed.image,
        image_ref=status.image_ref or listed.image_ref,
        started_at=timestamp(status.started_at),
        finished_at=timestamp(status.finished_at),
        exit_code=status.exit_code if exited else None,
        reason=status.reason or None,
        message=status.message or None,
        log_path=status.log_path or None,
        pid=verbose.pid if state == ContainerState.RUNNING else None,
        namespaces=verbose.namespaces,
        mounts=verbose.mounts,
        # The list call omits this for some runtimes; the status names it.
        sandbox_id=listed.sandbox_id or (verbose.sandbox_id or ""),
    )
    return merged, verbose.pid_needs_start_check


def event_from_message(message: api_pb2.ContainerEventResponse) -> ContainerEvent:
    """One GetContainerEvents message."""
    sandbox_id = None
    if message.HasField("pod_sandbox_status"):
        sandbox_id = message.pod_sandbox_status.id or None
    return ContainerEvent(
        container_id=message.container_id,
        type=_EVENT_TYPES.get(message.container_event_type, "unknown"),
        sandbox_id=sandbox_id,
        at=timestamp(message.created_at),
    )
