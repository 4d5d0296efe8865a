"""Container and pod identity from ``/proc/PID/cgroup``.

Paths the kubelet and the runtimes create, per cgroup driver::

    cgroupfs   /kubepods/burstable/pod<uid>/<id>            containerd, cri-dockerd
               /kubepods/pod<uid>/<id>                      guaranteed QoS
               /kubepods/besteffort/pod<uid>/crio-<id>      CRI-O
               /k8s.io/<id>                                 containerd, no cgroup parent
               /docker/<id>                                 docker
    systemd    /kubepods.slice/kubepods-burstable.slice/
                   kubepods-burstable-pod<uid_>.slice/cri-containerd-<id>.scope
               .../crio-<id>.scope                          CRI-O
               .../crio-conmon-<id>.scope                   CRI-O's conmon, not the container
               /system.slice/docker-<id>.scope              docker

``<uid_>`` is the pod UID with ``-`` replaced by ``_`` because ``-`` separates
the levels of a systemd slice name. Static pods have a 32-hex UID instead of a
UUID. Sandbox (pause) processes sit in a cgroup named by the sandbox ID, which
has the same shape as a container ID.

Cgroup v1 writes one ``N:controllers:path`` line per hierarchy, v2 a single
``0::path`` line, hybrid hosts both. When the reader lives in a cgroup
namespace, paths outside it are shown relative, with ``..`` components, so
matching works on individual path components rather than on prefixes.

Part of the host adapter: imports the standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# "crio-conmon-<id>" does not match: the ID must follow the prefix directly.
_CONTAINER_RE = re.compile(
    r"^(?:(?:cri-containerd|crio|docker|libpod)-)?(?P<id>[0-9a-f]{64})(?:\.scope)?$"
)
_POD_RE = re.compile(
    r"^(?:.*-)?pod(?P<uid>[0-9a-f]{8}(?:[-_][0-9a-f]{4}){3}[-_][0-9a-f]{12}|[0-9a-f]{32})"
    r"(?:\.slice)?$"
)
# The kernel appends this to a cgroup v2 path whose cgroup has been removed,
# which happens to zombies of a deleted container cgroup.
_DELETED_SUFFIX = " (deleted)"


@dataclass(frozen=True, slots=True)
class CgroupIdentity:
    container_id: str | None
    pod_uid: str | None


def _path_of(line: str) -> tuple[bool, str] | None:
    """Split a ``/proc/PID/cgroup`` line into (is_unified, path)."""
    parts = line.rstrip("\r\n").split(":", 2)
    if len(parts) != 3:
        return None
    hierarchy, controllers, path = parts
    path = path.removesuffix(_DELETED_SUFFIX)
    return hierarchy == "0" and controllers == "", path


def identity_from_path(path: str) -> CgroupIdentity:
    components = [c for c in path.split("/") if c and c != ".."]
    pod_uid: str | None = None
    pod_index = -1
    for index, component in enumerate(components):
        match = _POD_RE.match(component)
        if match:
            pod_uid = match.group("uid").replace("_", "-")
            pod_index = index
            # The first pod wins: anything beneath it (kind or docker run inside
            # a pod) is invisible to this node's runtime.
            break
    # Below a pod, the container is the first ID after the pod level; deeper
    # IDs are sub-cgroups or nested runtimes inside that container.
    for component in components[pod_index + 1 :]:
        match = _CONTAINER_RE.match(component)
        if match:
            return CgroupIdentity(container_id=match.group("id"), pod_uid=pod_uid)
    return CgroupIdentity(container_id=None, pod_uid=pod_uid)


def identities(lines: Iterable[str]) -> list[CgroupIdentity]:
    """Identity per cgroup line, the unified (v2) hierarchy first."""
    unified: list[CgroupIdentity] = []
    legacy: list[CgroupIdentity] = []
    for line in lines:
        parsed = _path_of(line)
        if parsed is None:
            continue
        is_unified, path = parsed
        (unified if is_unified else legacy).append(identity_from_path(path))
    return unified + legacy


def container_id_from_cgroup(lines: Iterable[str]) -> str | None:
    """The container ID the cgroup lines place a process in, or None.

    None for processes outside any container and for CRI-O's conmon, which
    sits in a cgroup named after the container it monitors but is not part
    of it.
    """
    for identity in identities(lines):
        if identity.container_id is not None:
            return identity.container_id
    return None


def pod_uid_from_cgroup(lines: Iterable[str]) -> str | None:
    """The pod UID (dashed form) the cgroup lines place a process in, or None."""
    for identity in identities(lines):
        if identity.pod_uid is not None:
            return identity.pod_uid
    return None
