"""A small kubelet stand-in: runs pods over CRI the way kubelet does.

What it sends is what kubelet sends (kubernetes pkg/kubelet/kuberuntime:
kuberuntime_sandbox.go, kuberuntime_container.go, labels.go), so anything the
agent reads back from the runtime (labels, annotations, attempts, log paths,
namespaces) looks as it does on a real node. Used on its own it runs
containers as given; the lab kubelet (``lab.kubelet``) adds what
kubelet decides on top of CRI: volumes as bind mounts, probes, restarts and
their backoff, status. Service environment variables and a cluster DNS are
left out everywhere.

Owns the CRI requests (``CriPodDriver``), kubelet's labels and annotations,
image references and the container hash. Imports ``cri_proto``, grpc and
``lab.errors`` only, so the tests and benchmarks can drive a runtime
without the lab kubelet.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc

from cri_proto import api_pb2, api_pb2_grpc
from lab.errors import CriCallFailed

LABEL_POD_NAME = "io.kubernetes.pod.name"
LABEL_POD_NAMESPACE = "io.kubernetes.pod.namespace"
LABEL_POD_UID = "io.kubernetes.pod.uid"
LABEL_CONTAINER_NAME = "io.kubernetes.container.name"
ANN_CONTAINER_HASH = "io.kubernetes.container.hash"
ANN_RESTART_COUNT = "io.kubernetes.container.restartCount"
ANN_TERMINATION_MESSAGE_PATH = "io.kubernetes.container.terminationMessagePath"
ANN_TERMINATION_MESSAGE_POLICY = "io.kubernetes.container.terminationMessagePolicy"
ANN_TERMINATION_GRACE_PERIOD = "io.kubernetes.pod.terminationGracePeriod"
ANN_CONTAINER_PORTS = "io.kubernetes.container.ports"
ANN_CONFIG_SEEN = "kubernetes.io/config.seen"
ANN_CONFIG_SOURCE = "kubernetes.io/config.source"
DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"

# Kubelet's defaults for a non-privileged container with the default
# procMount (pkg/securitycontext/util.go).
DEFAULT_MASKED_PATHS = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
DEFAULT_READONLY_PATHS = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

DEFAULT_TIMEOUT = 30.0
_CHANNEL_OPTIONS = [
    # A containerd restart drops the connection; reconnect within a fraction
    # of a second instead of grpc's default backoff of up to two minutes.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


def normalize_image_ref(ref: str) -> str:
    """Docker-style normalization: ``busybox`` -> ``docker.io/library/busybox:latest``."""
    name, _, digest = ref.partition("@")
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        domain, path = first, rest
    else:
        domain, path = "docker.io", name
    if domain == "docker.io" and "/" not in path:
        path = "library/" + path
    last = path.rsplit("/", 1)[-1]
    if not digest and ":" not in last:
        path += ":latest"
    return f"{domain}/{path}" + (f"@{digest}" if digest else "")


def _fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for byte in data:
        h ^= byte
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def container_hash(container: Mapping[str, Any]) -> str:
    """Stands in for kubelet's HashContainer: any edit of the spec changes it."""
    blob = json.dumps(container, sort_keys=True, separators=(",", ":"), default=str)
    return format(_fnv32a(blob.encode()), "x")


def _verbose_pid(info: Mapping[str, str]) -> int | None:
    # containerd's verbose "info" is a JSON string; pid 0 (or none) means no process.
    try:
        return int(json.loads(info.get("info", "{}")).get("pid") or 0) or None
    except (ValueError, TypeError, AttributeError):
        return None


@dataclass(frozen=True, slots=True)
class MountDef:
    """A host path bind-mounted into a container (kubelet's volume mounts)."""

    container_path: str
    host_path: str
    read_only: bool = False


@dataclass(frozen=True, slots=True)
class PortDef:
    """A declared container port; kubelet only records these in an annotation."""

    container_port: int
    name: str = ""
    protocol: str = "TCP"

    def to_api(self) -> dict[str, Any]:
        """The entry kubelet writes into the container-ports annotation."""
        # json.Marshal of a v1.ContainerPort: empty fields are omitted.
        out: dict[str, Any] = {}
        if self.name:
            out["name"] = self.name
        out["containerPort"] = self.container_port
        out["protocol"] = self.protocol
        return out


@dataclass(frozen=True, slots=True)
class ResourcesDef:
    """Linux cgroup settings as kubelet derives them from requests and limits."""

    cpu_shares: int = 0
    cpu_period: int = 0
    cpu_quota: int = 0
    memory_limit_bytes: int = 0


@dataclass(frozen=True, slots=True)
class SecurityDef:
    """The parts of a container security context the runtime enforces."""

    run_as_user: int | None = None
    run_as_group: int | None = None
    supplemental_groups: Sequence[int] = ()
    readonly_rootfs: bool = False
    no_new_privs: bool = False


@dataclass(frozen=True, slots=True)
class ContainerDef:
    """One container to create: what kubelet would put into its CRI ContainerConfig."""

    name: str
    image: str
    command: Sequence[str] = ()
    args: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    working_dir: str = ""
    termination_message_path: str = DEFAULT_TERMINATION_MESSAGE_PATH
    termination_message_policy: str = "File"
    mounts: Sequence[MountDef] = ()
    ports: Sequence[PortDef] = ()
    resources: ResourcesDef | None = None
    security: SecurityDef | None = None
    # Kubelet hashes the API's container spec; a caller that has one passes
    # its hash here so the annotation matches it, not this narrower view.
    api_hash: str = ""

    def spec_hash(self) -> str:
        """Stands in for kubelet's container hash: changes when the spec does."""
        if self.api_hash:
            return self.api_hash
        spec = {
            "name": self.name,
            "image": self.image,
            "command": list(self.command),
            "args": list(self.args),
            "env": dict(self.env),
            "workingDir": self.working_dir,
            "terminationMessagePath": self.termination_message_path,
            "terminationMessagePolicy": self.termination_message_policy,
        }
        return container_hash(spec)


@dataclass(frozen=True, slots=True)
class ContainerInstance:
    """One created container: name, ID, attempt and its CRI log file."""

    name: str
    id: str
    attempt: int
    log_path: Path


@dataclass(frozen=True, slots=True)
class ExecResult:
    """What ExecSync answered."""

    exit_code: int
    stdout: bytes
    stderr: bytes


@dataclass(slots=True)
class PodHandle:
    """A pod this driver runs: its sandbox, its container definitions and instances."""

    name: str
    namespace: str
    uid: str
    sandbox_id: str
    sandbox_attempt: int
    host_network: bool
    log_directory: Path
    sandbox_config: api_pb2.PodSandboxConfig
    definitions: dict[str, ContainerDef]
    cgroup_parent: str = ""
    termination_grace_period: int = 30
    share_process_namespace: bool = False
    # The newest instance of each container, by container name.
    containers: dict[str, ContainerInstance] = field(default_factory=dict)
    # Every instance ever created, oldest first.
    history: list[ContainerInstance] = field(default_factory=list)
    # Container name -> why it could not be created or started.
    errors: dict[str, str] = field(default_factory=dict)
    removed: bool = False

    @property
    def container_ids(self) -> dict[str, str]:
        """Container name -> ID of its newest instance."""
        return {name: inst.id for name, inst in self.containers.items()}

    def container_id(self, name: str) -> str:
        """The ID of the newest instance of container ``name``."""
        return self.containers[name].id


class CriPodDriver:
    """Runs, restarts, stops and removes pods on a CRI runtime, kubelet-style."""

    def __init__(self, endpoint: str, log_root: Path, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.endpoint = endpoint
        self.log_root = Path(log_root)
        self.timeout = timeout
        self._channel: Any = grpc.insecure_channel(endpoint, options=_CHANNEL_OPTIONS)
        self.runtime = api_pb2_grpc.RuntimeServiceStub(self._channel)
        self.images = api_pb2_grpc.ImageServiceStub(self._channel)
        self.pods: dict[str, PodHandle] = {}

    def close(self) -> None:
        """Close the gRPC channel."""
        self._channel.close()

    def __enter__(self) -> CriPodDriver:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --------------------------------------------------------------- calls

    def _call(self, method: str, request: Any, timeout: float | None = None) -> Any:
        try:
            # wait_for_ready: calls made while containerd restarts wait for
            # it (up to the deadline) instead of failing at once.
            return getattr(self.runtime, method)(
                request, timeout=timeout or self.timeout, wait_for_ready=True
            )
        except grpc.RpcError as exc:
            raise CriCallFailed(f"CRI {method} failed: {exc.code()}: {exc.details()}") from exc

    def image_status(self, image: str) -> api_pb2.Image | None:
        """The local image ``image`` names (normalized as kubelet does), or None."""
        ref = normalize_image_ref(image)
        try:
            resp = self.images.ImageStatus(
                api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=ref)),
                timeout=self.timeout,
                wait_for_ready=True,
            )
        except grpc.RpcError as exc:
            raise CriCallFailed(f"CRI ImageStatus({ref}) failed: {exc.details()}") from exc
        if not resp.image.id:
            return None
        found: api_pb2.Image = resp.image
        return found

    def resolve_image(self, image: str) -> api_pb2.Image:
        """The runtime's image for ``image``; CriCallFailed if absent (the lab never pulls)."""
        ref = normalize_image_ref(image)
        found = self.image_status(image)
        if found is None:
            raise CriCallFailed(
                f"image {ref} is not in the runtime and the lab cannot pull; "
                "build it in lab.images and import it"
            )
        return found

    # --------------------------------------------------------------- config

    @staticmethod
    def _namespace_options(
        host_network: bool, share_process_namespace: bool = False
    ) -> api_pb2.NamespaceOption:
        return api_pb2.NamespaceOption(
            network=api_pb2.NODE if host_network else api_pb2.POD,
            pid=api_pb2.POD if share_process_namespace else api_pb2.CONTAINER,
            ipc=api_pb2.POD,
        )

    def _sandbox_config(
        self,
        *,
        name: str,
        namespace: str,
        uid: str,
        attempt: int,
        labels: Mapping[str, str],
        annotations: Mapping[str, str],
        host_network: bool,
        log_directory: Path,
        cgroup_parent: str,
        share_process_namespace: bool = False,
        hostname: str | None = None,
        dns_config: api_pb2.DNSConfig | None = None,
    ) -> api_pb2.PodSandboxConfig:
        sandbox_labels = dict(labels)
        sandbox_labels.update(
            {LABEL_POD_NAME: name, LABEL_POD_NAMESPACE: namespace, LABEL_POD_UID: uid}
        )
        sandbox_annotations = {
            ANN_CONFIG_SEEN: datetime.now(UTC)
            .isoformat(timespec="microseconds")
            .replace("+00:00", "Z"),
            ANN_CONFIG_SOURCE: "api",
        }
        sandbox_annotations.update(annotations)
        return api_pb2.PodSandboxConfig(
            metadata=api_pb2.PodSandboxMetadata(
                name=name, namespace=namespace, uid=uid, attempt=attempt
            ),
            # containerd refuses a hostname without a private UTS namespace,
            # and kubelet leaves it empty for host-network pods.
            hostname="" if host_network else (hostname or name),
            log_directory=str(log_directory),
            dns_config=dns_config,
            labels=sandbox_labels,
            annotations=sandbox_annotations,
            linux=api_pb2.LinuxPodSandboxConfig(
                cgroup_parent=cgroup_parent,
                security_context=api_pb2.LinuxSandboxSecurityContext(
                    namespace_options=self._namespace_options(
                        host_network, share_process_namespace
                    ),
                ),
            ),
        )

    def _container_config(
        self, handle: PodHandle, definition: ContainerDef, attempt: int, image_id: str
    ) -> api_pb2.ContainerConfig:
        annotations = {
            ANN_CONTAINER_HASH: definition.spec_hash(),
            ANN_RESTART_COUNT: str(attempt),
            ANN_TERMINATION_MESSAGE_PATH: definition.termination_message_path,
            ANN_TERMINATION_MESSAGE_POLICY: definition.termination_message_policy,
            ANN_TERMINATION_GRACE_PERIOD: str(handle.termination_grace_period),
        }
        if definition.ports:
            annotations[ANN_CONTAINER_PORTS] = json.dumps(
                [p.to_api() for p in definition.ports], separators=(",", ":")
            )
        security = api_pb2.LinuxContainerSecurityContext(
            namespace_options=self._namespace_options(
                handle.host_network, handle.share_process_namespace
            ),
            masked_paths=list(DEFAULT_MASKED_PATHS),
            readonly_paths=list(DEFAULT_READONLY_PATHS),
        )
        if (sc := definition.security) is not None:
            if sc.run_as_user is not None:
                security.run_as_user.value = sc.run_as_user
            if sc.run_as_group is not None:
                security.run_as_group.value = sc.run_as_group
            security.supplemental_groups.extend(sc.supplemental_groups)
            security.readonly_rootfs = sc.readonly_rootfs
            security.no_new_privs = sc.no_new_privs
        linux = api_pb2.LinuxContainerConfig(security_context=security)
        if (res := definition.resources) is not None:
            linux.resources.cpu_shares = res.cpu_shares
            linux.resources.cpu_period = res.cpu_period
            linux.resources.cpu_quota = res.cpu_quota
            linux.resources.memory_limit_in_bytes = res.memory_limit_bytes
        return api_pb2.ContainerConfig(
            metadata=api_pb2.ContainerMetadata(name=definition.name, attempt=attempt),
            # Kubelet hands the runtime the resolved image ID and keeps what
            # the user wrote in user_specified_image.
            image=api_pb2.ImageSpec(image=image_id, user_specified_image=definition.image),
            command=list(definition.command),
            args=list(definition.args),
            working_dir=definition.working_dir,
            envs=[api_pb2.KeyValue(key=k, value=v) for k, v in definition.env.items()],
            mounts=[
                api_pb2.Mount(
                    container_path=m.container_path, host_path=m.host_path, readonly=m.read_only
                )
                for m in definition.mounts
            ],
            labels={
                LABEL_CONTAINER_NAME: definition.name,
                LABEL_POD_NAME: handle.name,
                LABEL_POD_NAMESPACE: handle.namespace,
                LABEL_POD_UID: handle.uid,
            },
            annotations=annotations,
            log_path=f"{definition.name}/{attempt}.log",
            linux=linux,
        )

    # --------------------------------------------------------------- pods

    def run_pod(
        self,
        name: str,
        namespace: str = "default",
        uid: str | None = None,
        containers: Sequence[ContainerDef] = (),
        host_network: bool = False,
        labels: Mapping[str, str] | None = None,
        sandbox_attempt: int = 0,
        *,
        annotations: Mapping[str, str] | None = None,
        termination_grace_period: int = 30,
        cgroup_parent: str = "",
        check: bool = True,
        share_process_namespace: bool = False,
        hostname: str | None = None,
        dns_config: api_pb2.DNSConfig | None = None,
    ) -> PodHandle:
        """Create the sandbox, then create and start each container in order.

        A container that fails to be created or started is recorded in
        ``handle.errors`` (the pod stays, as on a node); with ``check`` the
        call then raises, with the handle on the exception as ``.handle``.
        """
        uid = uid or str(uuid.uuid4())
        log_directory = self.log_root / f"{namespace}_{name}_{uid}"
        log_directory.mkdir(parents=True, exist_ok=True)
        config = self._sandbox_config(
            name=name,
            namespace=namespace,
            uid=uid,
            attempt=sandbox_attempt,
            labels=labels or {},
            annotations=annotations or {},
            host_network=host_network,
            log_directory=log_directory,
            cgroup_parent=cgroup_parent,
            share_process_namespace=share_process_namespace,
            hostname=hostname,
            dns_config=dns_config,
        )
        resp = self._call("RunPodSandbox", api_pb2.RunPodSandboxRequest(config=config), timeout=120)
        handle = PodHandle(
            name=name,
            namespace=namespace,
            uid=uid,
            sandbox_id=resp.pod_sandbox_id,
            sandbox_attempt=sandbox_attempt,
            host_network=host_network,
            log_directory=log_directory,
            sandbox_config=config,
            definitions={c.name: c for c in containers},
            cgroup_parent=cgroup_parent,
            termination_grace_period=termination_grace_period,
            share_process_namespace=share_process_namespace,
        )
        self.pods[handle.sandbox_id] = handle
        for definition in containers:
            self._start_container(handle, definition, attempt=0)
        if check and handle.errors:
            raise CriCallFailed(
                f"pod {namespace}/{name}: containers failed: {handle.errors}", handle=handle
            )
        return handle

    def adopt_pod(
        self,
        sandbox_id: str,
        name: str,
        namespace: str,
        uid: str,
        *,
        sandbox_attempt: int,
        host_network: bool = False,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        termination_grace_period: int = 30,
        share_process_namespace: bool = False,
        hostname: str | None = None,
        dns_config: api_pb2.DNSConfig | None = None,
    ) -> PodHandle:
        """A handle for a sandbox that already runs (created by an earlier process).

        The sandbox config is rebuilt from the same inputs, as kubelet does
        after a restart, so containers created through the handle get the
        config they would have had.
        """
        log_directory = self.log_root / f"{namespace}_{name}_{uid}"
        log_directory.mkdir(parents=True, exist_ok=True)
        config = self._sandbox_config(
            name=name,
            namespace=namespace,
            uid=uid,
            attempt=sandbox_attempt,
            labels=labels or {},
            annotations=annotations or {},
            host_network=host_network,
            log_directory=log_directory,
            cgroup_parent="",
            share_process_namespace=share_process_namespace,
            hostname=hostname,
            dns_config=dns_config,
        )
        handle = PodHandle(
            name=name,
            namespace=namespace,
            uid=uid,
            sandbox_id=sandbox_id,
            sandbox_attempt=sandbox_attempt,
            host_network=host_network,
            log_directory=log_directory,
            sandbox_config=config,
            definitions={},
            termination_grace_period=termination_grace_period,
            share_process_namespace=share_process_namespace,
        )
        self.pods[sandbox_id] = handle
        return handle

    def create_container(
        self, handle: PodHandle, definition: ContainerDef, attempt: int, image_id: str
    ) -> ContainerInstance:
        """CreateContainer only (no start); the instance is recorded on the handle."""
        (handle.log_directory / definition.name).mkdir(parents=True, exist_ok=True)
        config = self._container_config(handle, definition, attempt, image_id)
        created = self._call(
            "CreateContainer",
            api_pb2.CreateContainerRequest(
                pod_sandbox_id=handle.sandbox_id,
                config=config,
                sandbox_config=handle.sandbox_config,
            ),
        )
        instance = ContainerInstance(
            name=definition.name,
            id=created.container_id,
            attempt=attempt,
            log_path=handle.log_directory / config.log_path,
        )
        handle.definitions[definition.name] = definition
        handle.containers[definition.name] = instance
        handle.history.append(instance)
        return instance

    def start_container(self, container_id: str) -> None:
        """StartContainer."""
        self._call("StartContainer", api_pb2.StartContainerRequest(container_id=container_id))

    def stop_container(self, container_id: str, timeout: int = 0) -> None:
        """StopContainer: the stop signal, then SIGKILL after ``timeout`` seconds."""
        self._call(
            "StopContainer",
            api_pb2.StopContainerRequest(container_id=container_id, timeout=timeout),
            timeout=self.timeout + timeout,
        )

    def remove_container(self, container_id: str) -> None:
        """RemoveContainer."""
        self._call("RemoveContainer", api_pb2.RemoveContainerRequest(container_id=container_id))

    def stop_sandbox(self, sandbox_id: str) -> None:
        """StopPodSandbox: its containers are killed and its network torn down."""
        self._call("StopPodSandbox", api_pb2.StopPodSandboxRequest(pod_sandbox_id=sandbox_id))

    def remove_sandbox(self, sandbox_id: str) -> None:
        """RemovePodSandbox; the driver forgets the pod's handle."""
        self._call("RemovePodSandbox", api_pb2.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id))
        handle = self.pods.pop(sandbox_id, None)
        if handle is not None:
            handle.removed = True

    def exec_sync(self, container_id: str, cmd: Sequence[str], timeout: int = 0) -> ExecResult:
        """ExecSync; ``timeout`` is the runtime's, in whole seconds (0: none)."""
        resp = self._call(
            "ExecSync",
            api_pb2.ExecSyncRequest(container_id=container_id, cmd=list(cmd), timeout=timeout),
            timeout=self.timeout + timeout,
        )
        return ExecResult(int(resp.exit_code), bytes(resp.stdout), bytes(resp.stderr))

    def exec_url(
        self,
        container_id: str,
        cmd: Sequence[str],
        *,
        tty: bool,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> str:
        """Exec: the runtime's one-time streaming URL for the command (nothing runs until used)."""
        resp = self._call(
            "Exec",
            api_pb2.ExecRequest(
                container_id=container_id,
                cmd=list(cmd),
                tty=tty,
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
            ),
        )
        return str(resp.url)

    def port_forward_url(self, sandbox_id: str, ports: Sequence[int]) -> str:
        """PortForward: the runtime's one-time streaming URL for the sandbox's ports."""
        resp = self._call(
            "PortForward", api_pb2.PortForwardRequest(pod_sandbox_id=sandbox_id, port=list(ports))
        )
        return str(resp.url)

    def list_sandboxes(self, labels: Mapping[str, str] | None = None) -> list[api_pb2.PodSandbox]:
        """ListPodSandbox, filtered by exact-match labels."""
        resp = self._call(
            "ListPodSandbox",
            api_pb2.ListPodSandboxRequest(
                filter=api_pb2.PodSandboxFilter(label_selector=dict(labels or {}))
            ),
        )
        return list(resp.items)

    def list_containers(self, labels: Mapping[str, str] | None = None) -> list[api_pb2.Container]:
        """ListContainers, filtered by exact-match labels."""
        resp = self._call(
            "ListContainers",
            api_pb2.ListContainersRequest(
                filter=api_pb2.ContainerFilter(label_selector=dict(labels or {}))
            ),
        )
        return list(resp.containers)

    def _start_container(
        self, handle: PodHandle, definition: ContainerDef, attempt: int
    ) -> ContainerInstance | None:
        handle.errors.pop(definition.name, None)
        try:
            image = self.resolve_image(definition.image)
            instance = self.create_container(handle, definition, attempt, image.id)
        except CriCallFailed as exc:
            (handle.log_directory / definition.name).mkdir(parents=True, exist_ok=True)
            handle.errors[definition.name] = str(exc)
            return None
        try:
            self.start_container(instance.id)
        except CriCallFailed as exc:
            handle.errors[definition.name] = str(exc)
        return instance

    def restart_container(
        self,
        handle: PodHandle,
        name: str,
        *,
        stop_timeout: int = 0,
        keep_dead: int | None = 1,
        check: bool = True,
    ) -> ContainerInstance:
        """Start a new instance of container ``name`` with attempt + 1.

        A still-running instance is stopped first (as kubelet kills before
        restarting). Dead instances beyond ``keep_dead`` (kubelet's container
        GC keeps one per container) are removed, oldest first; ``None``
        keeps them all.
        """
        current = handle.containers[name]
        status = self.container_status(current.id).status
        if status.state == api_pb2.CONTAINER_RUNNING:
            self._call(
                "StopContainer",
                api_pb2.StopContainerRequest(container_id=current.id, timeout=stop_timeout),
                timeout=self.timeout + stop_timeout,
            )
        instance = self._start_container(handle, handle.definitions[name], current.attempt + 1)
        if instance is None or (check and name in handle.errors):
            raise CriCallFailed(f"restarting {name}: {handle.errors.get(name)}", handle=handle)
        if keep_dead is not None:
            dead = [i for i in handle.history if i.name == name and i.id != instance.id]
            for old in dead[: max(len(dead) - keep_dead, 0)]:
                with contextlib.suppress(CriCallFailed):
                    self._call(
                        "RemoveContainer", api_pb2.RemoveContainerRequest(container_id=old.id)
                    )
                handle.history.remove(old)
        return instance

    def stop_pod(self, handle: PodHandle, *, stop_timeout: int = 0) -> None:
        """Kubelet's KillPod: stop every container, then the sandbox."""
        for instance in handle.containers.values():
            with contextlib.suppress(CriCallFailed):
                self._call(
                    "StopContainer",
                    api_pb2.StopContainerRequest(container_id=instance.id, timeout=stop_timeout),
                    timeout=self.timeout + stop_timeout,
                )
        self._call(
            "StopPodSandbox", api_pb2.StopPodSandboxRequest(pod_sandbox_id=handle.sandbox_id)
        )

    def remove_pod(
        self, handle: PodHandle, *, stop_timeout: int = 0, remove_logs: bool = False
    ) -> None:
        """Stop (if needed) and remove the pod; idempotent."""
        if handle.removed:
            return
        try:
            self.stop_pod(handle, stop_timeout=stop_timeout)
        except CriCallFailed as exc:
            if "NotFound" not in str(exc) and "NOT_FOUND" not in str(exc):
                raise
        # RemovePodSandbox also removes the sandbox's containers.
        self._call(
            "RemovePodSandbox", api_pb2.RemovePodSandboxRequest(pod_sandbox_id=handle.sandbox_id)
        )
        handle.removed = True
        self.pods.pop(handle.sandbox_id, None)
        if handle.cgroup_parent:
            _remove_cgroup_dirs(handle.cgroup_parent)
        if remove_logs:
            shutil.rmtree(handle.log_directory, ignore_errors=True)

    def remove_all(self) -> list[str]:
        """Remove every pod this driver created; returns errors instead of raising."""
        problems = []
        for handle in list(self.pods.values()):
            try:
                self.remove_pod(handle)
            except CriCallFailed as exc:
                problems.append(f"{handle.namespace}/{handle.name}: {exc}")
        return problems

    # --------------------------------------------------------------- reads

    def container_status(
        self, container_id: str, *, verbose: bool = False
    ) -> api_pb2.ContainerStatusResponse:
        """ContainerStatus."""
        resp: api_pb2.ContainerStatusResponse = self._call(
            "ContainerStatus",
            api_pb2.ContainerStatusRequest(container_id=container_id, verbose=verbose),
        )
        return resp

    def sandbox_status(
        self, sandbox_id: str, *, verbose: bool = False
    ) -> api_pb2.PodSandboxStatusResponse:
        """PodSandboxStatus."""
        resp: api_pb2.PodSandboxStatusResponse = self._call(
            "PodSandboxStatus",
            api_pb2.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id, verbose=verbose),
        )
        return resp

    def container_pid(self, container_id: str) -> int | None:
        """The container's process as the verbose status reports it; None unless it runs.

        CRI-O keeps reporting the PID after the process ended; by then the
        number may name another process, so it is never given out.
        """
        response = self.container_status(container_id, verbose=True)
        if response.status.state != api_pb2.CONTAINER_RUNNING:
            return None
        return _verbose_pid(response.info)

    def sandbox_pid(self, sandbox_id: str) -> int | None:
        """The sandbox's pause PID from the verbose status; None without one or once stopped.

        A CRI-O pod without an infra container (``drop_infra_ctr``) has none.
        """
        response = self.sandbox_status(sandbox_id, verbose=True)
        if response.status.state != api_pb2.SANDBOX_READY:
            return None
        return _verbose_pid(response.info)

    def wait_container_state(
        self, container_id: str, state: api_pb2.ContainerState.ValueType, timeout: float = 10.0
    ) -> api_pb2.ContainerStatus:
        """Poll until the container reaches ``state`` (a ``ContainerState`` value)."""
        deadline = time.monotonic() + timeout
        while True:
            status: api_pb2.ContainerStatus = self.container_status(container_id).status
            if status.state == state:
                return status
            if time.monotonic() >= deadline:
                raise CriCallFailed(
                    f"container {container_id[:13]} is "
                    f"{api_pb2.ContainerState.Name(status.state)}, wanted "
                    f"{api_pb2.ContainerState.Name(state)} within {timeout:.0f}s"
                )
            time.sleep(0.05)


def _remove_cgroup_dirs(cgroup_parent: str) -> None:
    """Remove a pod-level cgroup the runtime created under our parent.

    Kubelet creates and removes these itself; runc only removes the
    container's own cgroup. Non-empty or busy directories are left alone.
    """
    root = Path("/sys/fs/cgroup")
    relative = cgroup_parent.strip("/")
    if not relative:
        return
    hierarchies = [root] if (root / "cgroup.controllers").exists() else list(root.iterdir())
    for hierarchy in hierarchies:
        path = hierarchy / relative
        while path != hierarchy and path.is_relative_to(hierarchy):
            try:
                os.rmdir(path)
            except OSError:
                break
            path = path.parent
