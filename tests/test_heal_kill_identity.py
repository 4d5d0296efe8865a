"""The kill only ever reaches the container's own process: start time and cgroup checked
after the pidfd is open, and the pidfd then reports the exit."""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Callable
from datetime import timedelta

import pytest

from agent import host
from agent.api.errors import status_for
from agent.errors import ProcessGone, Unavailable
from cri_proto import api_pb2
from lab.cri_pods import ContainerDef, CriPodDriver, PodHandle

pytestmark = pytest.mark.containerd
BUSYBOX = "docker.io/library/busybox:latest"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return host.read_process(pid).state != "zombie"


async def test_identity_checks_refuse_and_the_right_process_is_killed(
    lab_pod: Callable[..., PodHandle], cri_driver: CriPodDriver
) -> None:
    handle = lab_pod(
        "victim",
        containers=[
            ContainerDef("a", BUSYBOX, command=["sleep", "3600"]),
            ContainerDef("b", BUSYBOX, command=["sleep", "3600"]),
        ],
    )
    a_id, b_id = handle.container_id("a"), handle.container_id("b")
    pid = cri_driver.container_pid(a_id)
    assert pid is not None
    started = host.process_start_time(pid)
    assert started is not None

    # A PID that now belongs to a process with another start time (what a
    # recycled PID looks like) is never signalled.
    with pytest.raises(ProcessGone, match="no longer exists"):
        host.signal_container_process(pid, started + timedelta(seconds=5), a_id, 9)
    # The right start time but another container's cgroup: refused too.
    with pytest.raises(ProcessGone, match="not in container"):
        host.signal_container_process(pid, started, b_id, 9)
    assert alive(pid)

    handle_a = host.signal_container_process(pid, started, a_id, 9)
    try:
        gone_at = await handle_a.wait_gone(within=5)
    finally:
        handle_a.close()
    assert gone_at is not None
    assert (gone_at - handle_a.signalled_at).total_seconds() < 1
    status = cri_driver.wait_container_state(a_id, api_pb2.CONTAINER_EXITED, timeout=5)
    assert status.exit_code == 137
    # The other container was untouched.
    assert alive(cri_driver.container_pid(b_id) or -1)


async def test_wait_gone_times_out_on_a_process_that_survives(
    lab_pod: Callable[..., PodHandle], cri_driver: CriPodDriver
) -> None:
    handle = lab_pod("survivor", containers=[ContainerDef("a", BUSYBOX, command=["sleep", "3600"])])
    container_id = handle.container_id("a")
    pid = cri_driver.container_pid(container_id)
    assert pid is not None
    started = host.process_start_time(pid)
    assert started is not None
    # Signal 0 checks the identity and delivers nothing.
    process = host.signal_container_process(pid, started, container_id, 0)
    try:
        assert await process.wait_gone(within=0.2) is None
    finally:
        process.close()
    await asyncio.sleep(0)
    assert alive(pid)


def _deny_pidfd_open(monkeypatch: pytest.MonkeyPatch) -> None:
    # What an older seccomp profile answers for a syscall it does not list.
    def denied(pid: int, flags: int = 0) -> int:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "pidfd_open", denied)


def test_without_pidfds_nothing_is_signalled_and_the_reason_is_given(
    lab_pod: Callable[..., PodHandle], cri_driver: CriPodDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert host.pidfd_unavailable() is None  # this machine has them
    handle = lab_pod("no-pidfd", containers=[ContainerDef("a", BUSYBOX, command=["sleep", "3600"])])
    pid = cri_driver.container_pid(handle.container_id("a"))
    assert pid is not None
    started = host.process_start_time(pid)
    assert started is not None

    _deny_pidfd_open(monkeypatch)
    reason = host.pidfd_unavailable()
    assert reason is not None
    assert "EPERM" in reason
    assert "seccomp" in reason
    with pytest.raises(Unavailable) as refused:
        host.signal_container_process(pid, started, handle.container_id("a"), 9)
    assert status_for(refused.value) == 503
    assert refused.value.detail["rule"] == "pidfd-unavailable"
    assert alive(pid)
