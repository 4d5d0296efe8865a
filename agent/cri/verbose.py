"""Reading the runtime's verbose status: the ``info`` map of a
``ContainerStatusResponse`` or ``PodSandboxStatusResponse`` asked with
``verbose=true``.

The map is free-form and each runtime fills it its own way, so everything here
is defensive: nothing raises, and whatever cannot be read is left out.

Shapes understood (key names as the runtimes write them):

* ``info["info"]`` is one JSON object. containerd containers carry
  ``sandboxID, pid, removing, snapshotKey, snapshotter, runtimeType,
  runtimeOptions, config, runtimeSpec``; containerd sandboxes ``pid,
  processStatus, netNamespaceClosed, image, snapshotKey, snapshotter,
  runtimeType, runtimeOptions, config, runtimeSpec, cniResult`` and from 2.0
  ``sandboxMetadata``. CRI-O containers carry ``sandboxID, pid, runtimeSpec,
  privileged``; CRI-O sandboxes ``image, pid, runtimeSpec`` only when an infra
  (pause) process exists, otherwise ``runtimeSpec`` alone or ``{}``.
* Runtimes older than containerd 1.6 / CRI-O 1.18 put ``pid``, ``runtimeSpec``
  (and ``sandboxID``) at the top level of the map, each JSON-encoded.

Everything namespace-, mount- and cgroup-related comes from the OCI runtime
spec (``runtimeSpec.linux.namespaces``, ``runtimeSpec.mounts``,
``runtimeSpec.linux.cgroupsPath``).

Part of the CRI adapter: imports the domain model and the standard library only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from agent.domain.model import ContainerState, Mount, NamespacePath, RuntimeKind, VerboseInfo

__all__ = [
    "NO_INFRA_CONTAINER",
    "NO_VERBOSE_INFO",
    "UNREADABLE_VERBOSE_INFO",
    "network_namespace_path",
    "parse_container_info",
    "parse_sandbox_info",
]

NO_VERBOSE_INFO = "runtime gave no verbose info"
UNREADABLE_VERBOSE_INFO = "runtime's verbose info is not a readable JSON object"
NO_INFRA_CONTAINER = "CRI-O runs this pod without an infra (pause) container (drop_infra_ctr)"

# PID_MAX_LIMIT on 64-bit Linux: anything larger cannot be a process id.
_PID_MAX = 4_194_304

# Keys that mark the pre-containerd-1.6 / pre-CRI-O-1.18 layout, where each
# field is its own map entry instead of living inside info["info"].
_LEGACY_KEYS = ("pid", "runtimeSpec", "sandboxID")

# What _loads returns for text that is not JSON (None is valid JSON: null).
_UNDECODABLE = object()

# containerd's processStatus values that mean the pause process is gone.
_DEAD_PROCESS_STATUSES = frozenset({"stopped", "deleted"})


def parse_container_info(
    kind: RuntimeKind, info: Mapping[str, str], state: ContainerState
) -> VerboseInfo:
    """Read ``ContainerStatusResponse.info`` for a container in ``state``.

    ``pid`` is only given when it can name the container's live process:
    containerd resets it to 0 on exit; CRI-O (from 1.28) keeps the last pid
    after exit, so for CRI-O it is used only while the container is RUNNING and
    ``pid_needs_start_check`` tells the caller to compare the process start
    time with the container's before trusting it.
    """
    payload, problem = _payload(info)
    if payload is None:
        return VerboseInfo(pid=None, pid_note=problem)
    namespaces, mounts, cgroups_path = _read_spec(payload.get("runtimeSpec"))
    sandbox_id = _nonempty_str(payload.get("sandboxID"))
    pid, note = _read_pid(payload)
    needs_check = False
    if pid is not None:
        pid, note, needs_check = _container_pid_rule(kind, state, pid)
    elif note is None and state is ContainerState.RUNNING:
        note = "runtime reports no process for a running container"
    return VerboseInfo(
        pid=pid,
        sandbox_id=sandbox_id,
        namespaces=namespaces,
        mounts=mounts,
        cgroups_path=cgroups_path,
        pid_note=note,
        pid_needs_start_check=needs_check,
    )


def parse_sandbox_info(kind: RuntimeKind, info: Mapping[str, str], ready: bool) -> VerboseInfo:
    """Read ``PodSandboxStatusResponse.info``; ``pid`` is the pause process.

    A CRI-O pod without an infra container has no pause process at all (the
    default ``drop_infra_ctr=true``): that is reported through ``pid_note``,
    not as a failure, and the namespaces CRI-O pinned for the pod are still
    returned when the runtime spec is present.
    """
    payload, problem = _payload(info)
    if payload is None:
        return VerboseInfo(pid=None, pid_note=problem)
    namespaces, mounts, cgroups_path = _read_spec(payload.get("runtimeSpec"))
    metadata = _containerd_sandbox_metadata(payload)
    namespaces = _with_netns_fallback(namespaces, _nonempty_str(metadata.get("NetNSPath")))
    sandbox_id = _nonempty_str(metadata.get("ID")) or _nonempty_str(payload.get("sandboxID"))

    if kind is RuntimeKind.CRIO and "pid" not in payload:
        # CRI-O writes image and pid only for a real infra container; a
        # spoofed one (no pause process) gets just the spec, or "{}".
        return VerboseInfo(
            pid=None,
            sandbox_id=sandbox_id,
            namespaces=namespaces,
            mounts=mounts,
            cgroups_path=cgroups_path,
            pid_note=NO_INFRA_CONTAINER,
        )

    pid, note = _read_pid(payload)
    needs_check = False
    if pid is not None:
        process_status = _nonempty_str(payload.get("processStatus"))
        if not ready:
            note = f"sandbox is not ready; the pid the runtime reports ({pid}) is not used"
            pid = None
        elif process_status in _DEAD_PROCESS_STATUSES:
            note = f"pause process status is {process_status!r}; pid {pid} is not used"
            pid = None
        else:
            needs_check = kind is not RuntimeKind.CONTAINERD
    elif note is None and ready:
        note = "runtime reports no pause process for a ready sandbox"
    return VerboseInfo(
        pid=pid,
        sandbox_id=sandbox_id,
        namespaces=namespaces,
        mounts=mounts,
        cgroups_path=cgroups_path,
        pid_note=note,
        pid_needs_start_check=needs_check,
    )


def network_namespace_path(info: VerboseInfo) -> str | None:
    """Where the process's network namespace can be opened, if anywhere.

    The spec's path when it names one (``/proc/<pausePID>/ns/net`` on
    containerd, ``/var/run/netns/<id>`` on CRI-O and for containerd's pause
    container). A ``network`` entry without a path means the process made its
    own namespace, reachable through ``/proc/<pid>/ns/net`` while the pid is
    known (subject to ``pid_needs_start_check``). No ``network`` entry at all
    means the host network: None.
    """
    for namespace in info.namespaces:
        if namespace.type != "network":
            continue
        if namespace.path:
            return namespace.path
        if info.pid is not None:
            return f"/proc/{info.pid}/ns/net"
        return None
    return None


# --------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------


def _payload(info: Mapping[str, str]) -> tuple[dict[str, Any] | None, str]:
    """The verbose object, or None and why there is none."""
    raw = info.get("info")
    if isinstance(raw, str) and raw.strip():
        decoded = _loads(raw)
        if isinstance(decoded, dict):
            return decoded, ""
        return None, UNREADABLE_VERBOSE_INFO
    if any(key in info for key in _LEGACY_KEYS):
        return _legacy_payload(info), ""
    return None, NO_VERBOSE_INFO


def _legacy_payload(info: Mapping[str, str]) -> dict[str, Any]:
    """Rebuild the one-object shape from the old one-entry-per-field layout."""
    payload: dict[str, Any] = {}
    for key in _LEGACY_KEYS:
        raw = info.get(key)
        if not isinstance(raw, str):
            continue
        decoded = _loads(raw)
        if key == "sandboxID" and not isinstance(decoded, str):
            # Some writers stored the ID bare rather than as a JSON string.
            decoded = raw.strip()
        if decoded is not _UNDECODABLE:
            payload[key] = decoded
        elif key == "pid":
            # Keep it so the note can say the pid was there but unusable.
            payload[key] = raw
    return payload


def _loads(raw: str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        # ValueError covers bad JSON and over-long integers; RecursionError
        # absurdly deep nesting. Neither may take the caller down.
        return _UNDECODABLE


def _read_pid(payload: Mapping[str, Any]) -> tuple[int | None, str | None]:
    """A usable positive pid, or None with a note when the value is unusable.

    pid 0 means "no process" and gets no note of its own.
    """
    if "pid" not in payload:
        return None, "runtime's verbose info has no pid"
    value = payload["pid"]
    # bool is an int subclass; JSON true is not a pid.
    if isinstance(value, int) and not isinstance(value, bool):
        if value == 0:
            return None, None
        if 0 < value <= _PID_MAX:
            return value, None
    return None, f"runtime reported an unusable pid ({_short_repr(value)})"


def _container_pid_rule(
    kind: RuntimeKind, state: ContainerState, pid: int
) -> tuple[int | None, str | None, bool]:
    if kind is RuntimeKind.CONTAINERD:
        if state is ContainerState.EXITED:
            return (
                None,
                f"container has exited; the pid the runtime reports ({pid}) is not used",
                False,
            )
        return pid, None, False
    if state is ContainerState.RUNNING:
        return pid, None, True
    runtime = "CRI-O" if kind is RuntimeKind.CRIO else "the runtime"
    return (
        None,
        f"container is {state.value}; {runtime} keeps reporting pid {pid} after the process "
        "ends, so it is not used",
        False,
    )


def _read_spec(
    spec: object,
) -> tuple[tuple[NamespacePath, ...], tuple[Mount, ...], str | None]:
    if not isinstance(spec, dict):
        return (), (), None
    linux = spec.get("linux")
    namespaces: tuple[NamespacePath, ...] = ()
    cgroups_path: str | None = None
    if isinstance(linux, dict):
        namespaces = _read_namespaces(linux.get("namespaces"))
        cgroups_path = _nonempty_str(linux.get("cgroupsPath"))
    return namespaces, _read_mounts(spec.get("mounts")), cgroups_path


def _read_namespaces(entries: object) -> tuple[NamespacePath, ...]:
    if not isinstance(entries, list):
        return ()
    out: list[NamespacePath] = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        ns_type = _nonempty_str(entry.get("type"))
        if ns_type is None:
            continue
        out.append(NamespacePath(type=ns_type, path=_nonempty_str(entry.get("path"))))
    return tuple(out)


def _read_mounts(entries: object) -> tuple[Mount, ...]:
    if not isinstance(entries, list):
        return ()
    out: list[Mount] = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        destination = _nonempty_str(entry.get("destination"))
        if destination is None:
            continue
        source = entry.get("source")
        options = entry.get("options")
        readonly = isinstance(options, list) and "ro" in options
        out.append(
            Mount(
                destination=destination,
                source=source if isinstance(source, str) else "",
                type=_nonempty_str(entry.get("type")),
                readonly=readonly,
            )
        )
    return tuple(out)


def _containerd_sandbox_metadata(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    """containerd 2.0's ``sandboxMetadata``, a versioned wrapper:
    ``{"Version": "v1", "Metadata": {"ID", "NetNSPath", ...}}``."""
    wrapper = payload.get("sandboxMetadata")
    if isinstance(wrapper, dict):
        inner = wrapper.get("Metadata")
        if isinstance(inner, dict):
            return inner
    return {}


def _with_netns_fallback(
    namespaces: tuple[NamespacePath, ...], netns_path: str | None
) -> tuple[NamespacePath, ...]:
    # containerd 2.0 can answer without a runtimeSpec (sandbox not fully
    # created, or its task gone) while still knowing the pod's netns path.
    if netns_path is None or any(ns.type == "network" for ns in namespaces):
        return namespaces
    return (*namespaces, NamespacePath(type="network", path=netns_path))


def _nonempty_str(value: object) -> str | None:
    if isinstance(value, str) and value:
        return value
    return None


def _short_repr(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
