"""Container and pod identity from every cgroup layout the node can produce."""

from __future__ import annotations

import hashlib

import pytest

from agent.host import container_id_from_cgroup, pod_uid_from_cgroup

CID = hashlib.sha256(b"app container").hexdigest()
OTHER = hashlib.sha256(b"another container").hexdigest()
UID = "0c8a3b5e-2d4f-4a6b-9c1d-7e8f90a1b2c3"
UID_ = UID.replace("-", "_")
STATIC_UID = "6e1d2c3b4a5f60718293a4b5c6d7e8f9"  # static pods: md5 hex, no dashes


def v1(path: str) -> list[str]:
    """The lines a cgroup v1 host writes for a process whose every hierarchy is at ``path``."""
    controllers = [
        "pids",
        "cpu,cpuacct",
        "memory",
        "blkio",
        "devices",
        "freezer",
        "net_cls,net_prio",
        "perf_event",
        "hugetlb",
        "cpuset",
        "rdma",
    ]
    lines = [f"{12 - i}:{c}:{path}" for i, c in enumerate(controllers)]
    lines.append(f"1:name=systemd:{path}")
    return lines


def v2(path: str) -> list[str]:
    return [f"0::{path}"]


SYSTEMD_POD = f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice"

CASES: list[tuple[str, list[str], str | None, str | None]] = [
    # containerd, cgroupfs driver
    ("containerd cgroupfs burstable v2", v2(f"/kubepods/burstable/pod{UID}/{CID}"), CID, UID),
    ("containerd cgroupfs burstable v1", v1(f"/kubepods/burstable/pod{UID}/{CID}"), CID, UID),
    ("containerd cgroupfs besteffort", v2(f"/kubepods/besteffort/pod{UID}/{CID}"), CID, UID),
    ("containerd cgroupfs guaranteed", v2(f"/kubepods/pod{UID}/{CID}"), CID, UID),
    ("containerd cgroupfs guaranteed v1", v1(f"/kubepods/pod{UID}/{CID}"), CID, UID),
    ("containerd without cgroup parent", v2(f"/k8s.io/{CID}"), CID, None),
    ("containerd without cgroup parent v1", v1(f"/k8s.io/{CID}"), CID, None),
    # containerd, systemd driver
    ("containerd systemd burstable", v2(f"{SYSTEMD_POD}/cri-containerd-{CID}.scope"), CID, UID),
    ("containerd systemd v1", v1(f"{SYSTEMD_POD}/cri-containerd-{CID}.scope"), CID, UID),
    (
        "containerd systemd besteffort",
        v2(
            "/kubepods.slice/kubepods-besteffort.slice/"
            f"kubepods-besteffort-pod{UID_}.slice/cri-containerd-{CID}.scope"
        ),
        CID,
        UID,
    ),
    (
        "containerd systemd guaranteed",
        v2(f"/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{CID}.scope"),
        CID,
        UID,
    ),
    (
        "containerd systemd, no cgroup parent",
        v2(f"/system.slice/cri-containerd-{CID}.scope"),
        CID,
        None,
    ),
    (
        "kind node with cgroup root /kubelet",
        v2(
            "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/"
            f"kubelet-kubepods-besteffort-pod{UID_}.slice/cri-containerd-{CID}.scope"
        ),
        CID,
        UID,
    ),
    # sub-cgroups inside the container's cgroup still belong to it
    (
        "systemd sub-cgroup init.scope",
        v2(f"{SYSTEMD_POD}/cri-containerd-{CID}.scope/init.scope"),
        CID,
        UID,
    ),
    (
        "systemd sub-cgroup system.slice service",
        v2(f"{SYSTEMD_POD}/cri-containerd-{CID}.scope/system.slice/nginx.service"),
        CID,
        UID,
    ),
    ("cgroupfs sub-cgroup", v2(f"/kubepods/burstable/pod{UID}/{CID}/worker"), CID, UID),
    (
        "docker run inside a pod names the pod's container, not the inner one",
        v2(f"/kubepods/burstable/pod{UID}/{CID}/docker/{OTHER}"),
        CID,
        UID,
    ),
    (
        "kind inside a pod names the outer pod and container",
        v2(
            f"/kubepods/burstable/pod{UID}/{CID}/kubelet.slice/kubelet-kubepods.slice/"
            f"kubelet-kubepods-pod{STATIC_UID}.slice/cri-containerd-{OTHER}.scope"
        ),
        CID,
        UID,
    ),
    (
        "kind node seen without a cgroup namespace (v1 host)",
        v1(f"/docker/{OTHER}/kubepods/burstable/pod{UID}/{CID}"),
        CID,
        UID,
    ),
    # CRI-O
    ("cri-o systemd", v2(f"{SYSTEMD_POD}/crio-{CID}.scope"), CID, UID),
    ("cri-o systemd v1", v1(f"{SYSTEMD_POD}/crio-{CID}.scope"), CID, UID),
    (
        "cri-o systemd nested container cgroup",
        v2(f"{SYSTEMD_POD}/crio-{CID}.scope/container"),
        CID,
        UID,
    ),
    ("cri-o cgroupfs", v2(f"/kubepods/burstable/pod{UID}/crio-{CID}"), CID, UID),
    ("cri-o conmon in the pod slice", v2(f"{SYSTEMD_POD}/crio-conmon-{CID}.scope"), None, UID),
    ("cri-o conmon v1", v1(f"{SYSTEMD_POD}/crio-conmon-{CID}.scope"), None, UID),
    ("cri-o conmon in system.slice", v2(f"/system.slice/crio-conmon-{CID}.scope"), None, None),
    ("cri-o conmon cgroupfs", v2(f"/kubepods/burstable/pod{UID}/crio-conmon-{CID}"), None, UID),
    # docker and cri-dockerd
    ("docker systemd", v2(f"/system.slice/docker-{CID}.scope"), CID, None),
    ("docker cgroupfs", v2(f"/docker/{CID}"), CID, None),
    ("docker cgroupfs v1", v1(f"/docker/{CID}"), CID, None),
    ("cri-dockerd cgroupfs", v2(f"/kubepods/besteffort/pod{UID}/{CID}"), CID, UID),
    ("cri-dockerd systemd", v2(f"{SYSTEMD_POD}/docker-{CID}.scope"), CID, UID),
    # static pods carry a 32-hex UID
    ("static pod cgroupfs", v2(f"/kubepods/burstable/pod{STATIC_UID}/{CID}"), CID, STATIC_UID),
    (
        "static pod systemd",
        v2(
            "/kubepods.slice/kubepods-burstable.slice/"
            f"kubepods-burstable-pod{STATIC_UID}.slice/cri-containerd-{CID}.scope"
        ),
        CID,
        STATIC_UID,
    ),
    # the reader sits in a cgroup namespace: paths outside it come out relative
    (
        "relative path from inside a cgroup namespace",
        v2(f"/../../kubepods-besteffort-pod{UID_}.slice/cri-containerd-{CID}.scope"),
        CID,
        UID,
    ),
    ("relative path to a sibling container", v2(f"/../{CID}"), CID, None),
    # zombies of a removed cgroup
    (
        "removed cgroup v2",
        [f"0::/kubepods/burstable/pod{UID}/{CID} (deleted)"],
        CID,
        UID,
    ),
    # hybrid hosts: v1 controllers plus a unified line that may say nothing
    (
        "hybrid, unified line at root",
        [*v1(f"/kubepods/burstable/pod{UID}/{CID}"), "0::/"],
        CID,
        UID,
    ),
    (
        "hybrid, only some controllers name the container",
        [
            "4:memory:/kubepods/burstable/pod" + UID + "/" + CID,
            "3:cpuset:/",
            "1:name=systemd:/system.slice/containerd.service",
            "0::/",
        ],
        CID,
        UID,
    ),
    # pod cgroup without a container level
    ("pod cgroup only", v2(f"/kubepods/burstable/pod{UID}"), None, UID),
    ("systemd pod slice only", v2(SYSTEMD_POD), None, UID),
    # not in a container
    ("host init", v2("/init.scope"), None, None),
    ("kubelet service", v2("/system.slice/kubelet.service"), None, None),
    ("containerd itself", v2("/system.slice/containerd.service"), None, None),
    ("login session", v2("/user.slice/user-1000.slice/session-3.scope"), None, None),
    ("root cgroup v1", v1("/"), None, None),
    ("qos level only", v2("/kubepods.slice/kubepods-burstable.slice"), None, None),
    (
        "32-hex cgroup names are not container IDs",
        ["4:memory:/process_api/c7752c79d81e50ebfcd83e28dce8a0ae", "0::/"],
        None,
        None,
    ),
    ("63 hex characters", v2(f"/k8s.io/{CID[:-1]}"), None, None),
    ("65 hex characters", v2(f"/k8s.io/{CID}0"), None, None),
    ("upper-case hex", v2(f"/k8s.io/{CID.upper()}"), None, None),
    ("other runtime prefix", v2(f"/system.slice/foo-{CID}.scope"), None, None),
    ("pod without a valid uid", v2(f"/kubepods/burstable/podnotauid/{CID}"), CID, None),
    ("no lines", [], None, None),
    ("malformed lines", ["", "garbage", f"/kubepods/pod{UID}/{CID}"], None, None),
]


@pytest.mark.parametrize(
    ("lines", "container_id", "pod_uid"),
    [pytest.param(lines, cid, uid, id=name) for name, lines, cid, uid in CASES],
)
def test_identity_from_cgroup(
    lines: list[str], container_id: str | None, pod_uid: str | None
) -> None:
    assert container_id_from_cgroup(lines) == container_id
    assert pod_uid_from_cgroup(lines) == pod_uid


def test_accepts_raw_file_text_lines_with_newlines() -> None:
    text = f"0::/kubepods/burstable/pod{UID}/{CID}\n"
    assert container_id_from_cgroup(text.splitlines(keepends=True)) == CID
    assert container_id_from_cgroup(iter([text])) == CID


def test_unified_line_wins_over_legacy_lines() -> None:
    lines = [f"1:name=systemd:/docker/{OTHER}", f"0::/kubepods/pod{UID}/{CID}"]
    assert container_id_from_cgroup(lines) == CID
