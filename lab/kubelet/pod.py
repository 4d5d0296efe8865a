"""One pod's worker: kubelet's SyncPod for the lab, from runtime state to API status.

Each sync reads what the runtime holds for the pod, decides what kubelet
would do next (computePodActions: a new sandbox, the next init container,
restarts under the restart policy and its backoff, kills for failed
liveness or startup probes), does it, and writes the status back. The
decision is always made from the runtime's view, so a sync can be repeated
or interrupted at any point and the next one carries on.

Owns ``PodWorker`` and ``KubeletContext``. Imports the rest of
``lab.kubelet``, ``lab.cri_pods``, ``lab.apitime``, ``lab.errors``, and
``agent.domain.backoff`` for kubelet's back-off steps.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from agent.domain.backoff import backoff_for_restarts
from cri_proto import api_pb2
from lab.apitime import parse_rfc3339, rfc3339
from lab.cri_pods import (
    ContainerDef,
    CriPodDriver,
    MountDef,
    PodHandle,
    PortDef,
    ResourcesDef,
    SecurityDef,
    normalize_image_ref,
)
from lab.errors import CriCallFailed, LabError
from lab.kubelet.api import ApiClient, ApiError
from lab.kubelet.backoff import RestartBackoff, RetryDelay, crash_loop_message
from lab.kubelet.events import EventRecorder, InvolvedPod
from lab.kubelet.probe import LIVENESS, READINESS, STARTUP, ProbeTarget, ProbeWorker
from lab.kubelet.runtime import (
    PodRuntime,
    RuntimeContainer,
    SandboxView,
    StatusCache,
    read_pod_runtime,
    read_termination_message,
)
from lab.kubelet.spec import ContainerManifest, PodManifest, Probe, read_pod

_log = logging.getLogger("lab.kubelet")

JSON = dict[str, Any]

NORMAL: Final = "Normal"
WARNING: Final = "Warning"
CLUSTER_DOMAIN: Final = "cluster.local"
# Kubelet retries a container whose config cannot be built on its pod
# resync; the lab uses this many nominal seconds.
CONFIG_RETRY: Final = 10
# How long (nominal seconds) an exit shows as terminated before its back-off
# shows as waiting: kubelet's next sync of the pod, about a second later.
EXIT_SHOWN_FOR: Final = 1.0
# How often (seconds) the status is written while a deleted pod's containers stop.
STATUS_POLL: Final = 0.5
# How long (nominal seconds) a deleted pod's final status stays before the object goes.
FINAL_STATUS_HOLD: Final = 1.0
# The lab has no cluster DNS: pods get a resolver on their own loopback,
# where nothing answers, so a lookup fails at once and no query ever
# leaves the pod (or, for host-network pods, the machine).
LAB_NAMESERVER: Final = "127.0.0.1"
LAB_NOTE_NSLOOKUP: Final = (
    "the lab has no cluster DNS: a Service name never resolves here, so an init "
    "container waiting on `nslookup myservice` waits forever, exactly as it would in a "
    "cluster where no such Service exists"
)
_EXPANSION = re.compile(r"\$\$|\$\(([^)]*)\)")


class ConfigError(LabError):
    """A container's config cannot be built (kubelet's CreateContainerConfigError)."""


@dataclass(slots=True)
class KubeletContext:
    """What every pod worker shares."""

    driver: CriPodDriver
    api: ApiClient
    events: EventRecorder
    node_name: str
    node_ip: str
    node_labels: dict[str, str]
    root: Path
    time_scale: float
    host_path_prefixes: tuple[str, ...]
    backoff: RestartBackoff
    cache: StatusCache
    runtime_name: str = "containerd"
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def pods_dir(self) -> Path:
        """Where each pod's directory is kept."""
        return self.root / "pods"

    @property
    def pod_logs_dir(self) -> Path:
        """The root of the container log files (``<ns>_<pod>_<uid>/<container>/<n>.log``)."""
        return self.root / "log" / "pods"

    @property
    def container_logs_dir(self) -> Path:
        """The ``/var/log/containers`` stand-in: one symlink per container log."""
        return self.root / "log" / "containers"


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubelet's $(VAR) expansion: known names are replaced, ``$$`` is a ``$``."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)

    return _EXPANSION.sub(sub, text)


def _should_restart(policy: str, exit_code: int) -> bool:
    if policy == "Always":
        return True
    if policy == "OnFailure":
        return exit_code != 0
    return False


def _ns_to_s(ns: int) -> float:
    return ns / 1e9


class PodWorker:
    """Syncs one pod (by UID) on a thread of its own until it is deleted."""

    def __init__(self, ctx: KubeletContext, pod: JSON) -> None:
        self.ctx = ctx
        meta = pod.get("metadata") or {}
        self.uid: str = str(meta.get("uid") or "")
        self.namespace: str = str(meta.get("namespace") or "default")
        self.name: str = str(meta.get("name") or "")
        self.ref = InvolvedPod(self.namespace, self.name, self.uid)
        self._lock = threading.Lock()
        self._pod = pod
        self._deleted = False
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._next_wake: float | None = None
        self._thread: threading.Thread | None = None
        self.finished = threading.Event()

        status = pod.get("status") or {}
        self._start_time: str | None = status.get("startTime")
        self._terminal: str | None = (
            status.get("phase") if status.get("phase") in ("Succeeded", "Failed") else None
        )
        self._terminal_reason: tuple[str, str] | None = None
        # A pod the API already shows as finished keeps that status: kubelet
        # never rewrites a terminal pod's status, even from an emptier runtime.
        self._final_in_api = self._terminal is not None
        self._transitions: dict[str, tuple[str, str]] = {
            c["type"]: (c.get("status", ""), c.get("lastTransitionTime") or rfc3339())
            for c in status.get("conditions") or []
            if isinstance(c, dict) and "type" in c
        }
        self._last_status: JSON | None = None
        self._waiting: dict[str, tuple[str, str]] = {}
        self._pull_failures: dict[str, tuple[int, float]] = {}
        self._config_retry: dict[str, float] = {}
        self._handles: dict[str, PodHandle] = {}
        self._initialized_in: str | None = None
        self._init_failed = False
        self._probes: dict[tuple[str, str], ProbeWorker] = {}
        self._messages: dict[str, str] = {}
        self._reported: set[str] = set()
        self._pause_pids: dict[str, int | None] = {}
        # Exited instances whose terminated state has been written once.
        self._exit_shown: set[str] = set()

    @property
    def pod(self) -> JSON:
        """The newest pod object from the API."""
        with self._lock:
            return self._pod

    # -- control -----------------------------------------------------------

    def start(self) -> PodWorker:
        """Start syncing on a thread of its own."""
        self._thread = threading.Thread(
            target=self._run, name=f"pod-{self.namespace}/{self.name}", daemon=True
        )
        self._thread.start()
        return self

    def update(self, pod: JSON) -> None:
        """A newer pod object from the API; a sync follows only if what to run changed."""
        with self._lock:
            before = self._pod
            self._pod = pod
        # Most updates are this kubelet's own status writes coming back
        # through the watch; only a change of what to run needs a sync.
        if pod.get("spec") != before.get("spec") or (pod.get("metadata") or {}).get(
            "deletionTimestamp"
        ) != (before.get("metadata") or {}).get("deletionTimestamp"):
            self.wake()

    def delete(self) -> None:
        """The API object is gone: kill the pod and remove it on the next sync."""
        with self._lock:
            self._deleted = True
        self.wake()

    def wake(self, after: float = 0.0) -> None:
        """Sync now, or no later than ``after`` seconds from now."""
        if after <= 0:
            self._wake.set()
            return
        at = time.monotonic() + after
        with self._lock:
            if self._next_wake is None or at < self._next_wake:
                self._next_wake = at

    def stop(self) -> None:
        """Stop syncing (the kubelet stops); the pod keeps running."""
        self._stop.set()
        self._wake.set()
        for worker in list(self._probes.values()):
            worker.stop()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the worker's thread to end."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        retry = RetryDelay()
        while not self._stop.is_set():
            with self._lock:
                due = self._next_wake
            timeout = None if due is None else max(0.0, due - time.monotonic())
            # A periodic resync, as kubelet has, in case a change was missed.
            self._wake.wait(10.0 if timeout is None else min(timeout, 10.0))
            if self._stop.is_set():
                break
            self._wake.clear()
            with self._lock:
                if self._next_wake is not None and self._next_wake <= time.monotonic():
                    self._next_wake = None
            try:
                if self.sync():
                    break
                retry.reset()
            except (CriCallFailed, ApiError) as exc:
                delay = retry.next()
                _log.warning(
                    "pod %s/%s: %s (retrying in %.1fs)", self.namespace, self.name, exc, delay
                )
                self.wake(delay)
            except Exception:
                _log.exception("pod %s/%s: sync failed", self.namespace, self.name)
                self.wake(retry.next())
        self.finished.set()

    # -- helpers -----------------------------------------------------------

    def _event(
        self, type_: str, reason: str, message: str, c: ContainerManifest | None = None
    ) -> None:
        self.ctx.events.emit(
            self.ref, type_, reason, message, field_path=c.field_path if c is not None else ""
        )

    def _scaled(self, nominal: float) -> float:
        return nominal * self.ctx.time_scale

    def _pod_dir(self) -> Path:
        return self.ctx.pods_dir / self.uid

    def _backoff_key(self, c: ContainerManifest) -> tuple[str, ...]:
        return (self.namespace, self.name, self.uid, c.name, c.spec_hash)

    def _pod_label(self) -> str:
        return f"{self.name}_{self.namespace}({self.uid})"

    def _read(self) -> PodRuntime:
        return read_pod_runtime(self.ctx.driver, self.uid, self.ctx.cache)

    # -- the sync ------------------------------------------------------------

    def sync(self) -> bool:
        """One pass; True once the pod is gone and cleaned up."""
        with self._lock:
            pod = self._pod
            deleted = self._deleted
        m = read_pod(
            pod,
            node_name=self.ctx.node_name,
            node_labels=self.ctx.node_labels,
            host_path_prefixes=self.ctx.host_path_prefixes,
        )
        if deleted or m.deletion_timestamp:
            grace = m.deletion_grace if m.deletion_grace is not None else m.grace_period
            if not deleted:
                self._stop_for_deletion(m, pod, grace)
            self._terminate(m, grace)
            if not deleted:
                # The API server waits for the node to confirm before it
                # drops a gracefully deleted pod.
                self.ctx.api.delete_pod(self.namespace, self.name, self.uid)
            return True
        if self._start_time is None:
            self._start_time = rfc3339()
        self._waiting = {}
        self._note_once(m)
        rt = self._read()

        if m.unsupported:
            self._report_unsupported(m)
            self._write_status(m, pod, rt, None)
            return False
        if self._terminal is None:
            self._check_deadline(m, rt)
        if self._terminal is not None:
            rt = self._finish(m, rt)
            if not self._final_in_api:
                self._write_status(m, pod, rt, rt.latest_sandbox)
            return False

        if rt.latest_sandbox is None or not rt.latest_sandbox.ready:
            # As kubelet does, the status says the sandbox is missing before
            # one is made: at first (Pending, ContainerCreating), and when the
            # pause process died (PodReadyToStartContainers False).
            self._write_status(m, pod, rt, None)
        made = self._ensure_sandbox(m, rt)
        rt = self._read()
        sandbox = rt.latest_sandbox
        if made is None or sandbox is None or not sandbox.ready:
            self._write_status(m, pod, rt, None)
            return False
        if not self._pause_alive(sandbox):
            # The pause process is gone and the runtime has not marked its
            # sandbox yet: a container started now would fail on the dead
            # namespaces. The next sync finds the sandbox not ready and makes
            # a new one, as kubelet does after its relist sees the exit.
            self.wake(0.2)
            return False
        handle = self._handle(m, sandbox)
        acted = False
        initialized = self._initialized_in == sandbox.id or any(
            rt.in_sandbox(c.name, sandbox.id) for c in m.containers
        )
        if initialized:
            self._initialized_in = sandbox.id
        else:
            result, acted = self._sync_init(m, rt, handle, sandbox)
            if result == "done":
                self._initialized_in = sandbox.id
                initialized = True
                if acted:
                    rt = self._read()
            elif result == "failed":
                self._init_failed = True
                self._terminal = "Failed"
        if initialized and self._terminal is None:
            acted = self._sync_running(m, rt, handle, sandbox) or acted
        if acted:
            rt = self._read()
            # Something was started or stopped: look again soon, as a
            # relist would, rather than wait for the next change.
            self.wake(0.05)
        phase = self._phase(m, rt, initialized)
        if phase in ("Succeeded", "Failed") and self._terminal is None:
            self._terminal = phase
            rt = self._finish(m, rt)
        self._ensure_probes(m, rt, sandbox)
        self._gc_sandboxes(rt)
        self._write_status(m, pod, rt, sandbox)
        return False

    # -- notes and refusals ---------------------------------------------------

    def _note_once(self, m: PodManifest) -> None:
        if "nslookup" in self._reported:
            return
        for c in m.init_containers:
            if any("nslookup" in part for part in (*c.command, *c.args)):
                self._event(NORMAL, "LabNote", LAB_NOTE_NSLOOKUP, c)
                break
        self._reported.add("nslookup")

    def _report_unsupported(self, m: PodManifest) -> None:
        message = "the lab cannot honour " + "; ".join(str(u) for u in m.unsupported)
        for c in m.all_containers:
            self._waiting[c.name] = ("CreateContainerConfigError", message)
        key = "unsupported:" + message
        if key not in self._reported:
            self._reported.add(key)
            for c in m.all_containers or ():
                self._event(WARNING, "Failed", f"Error: {message}", c)
            if not m.all_containers:
                self._event(WARNING, "Failed", f"Error: {message}")

    def _check_deadline(self, m: PodManifest, rt: PodRuntime) -> None:
        if m.active_deadline is None or self._start_time is None:
            return
        started = parse_rfc3339(self._start_time)
        left = started + self._scaled(m.active_deadline) - time.time()
        if left > 0:
            self.wake(left)
            return
        message = "Pod was active on the node longer than the specified deadline"
        self._terminal = "Failed"
        self._terminal_reason = ("DeadlineExceeded", message)
        self._event(NORMAL, "DeadlineExceeded", message)

    # -- sandbox ----------------------------------------------------------------

    def _ensure_sandbox(self, m: PodManifest, rt: PodRuntime) -> SandboxView | None:
        sandbox = rt.latest_sandbox
        if sandbox is not None and sandbox.ready:
            return sandbox
        mount_error = self._setup_volumes(m)
        if mount_error is not None:
            self._event(WARNING, "FailedMount", mount_error)
            for c in m.all_containers:
                self._waiting[c.name] = ("ContainerCreating", "")
            self.wake(self._scaled(CONFIG_RETRY))
            return None
        attempt = 0
        if sandbox is not None:
            attempt = sandbox.attempt + 1
            if m.restart_policy == "Never" and rt.containers:
                # Kubelet does not recreate the sandbox of a pod that must
                # not restart and has already run: the pod is over.
                self._kill_all(rt, m, m.grace_period, "")
                with contextlib.suppress(CriCallFailed):
                    self.ctx.driver.stop_sandbox(sandbox.id)
                rt = self._read()
                apps = [rt.latest(c.name) for c in m.containers]
                done = all(i is not None and i.exited and i.exit_code == 0 for i in apps)
                self._terminal = "Succeeded" if done else "Failed"
                return None
            self._event(
                NORMAL, "SandboxChanged", "Pod sandbox changed, it will be killed and re-created."
            )
            self._kill_all(rt, m, m.grace_period, "")
            with contextlib.suppress(CriCallFailed):
                self.ctx.driver.stop_sandbox(sandbox.id)
            self._initialized_in = None
        dns = api_pb2.DNSConfig(
            servers=[LAB_NAMESERVER],
            searches=[
                f"{self.namespace}.svc.{CLUSTER_DOMAIN}",
                f"svc.{CLUSTER_DOMAIN}",
                CLUSTER_DOMAIN,
            ],
            options=["ndots:5"],
        )
        try:
            handle = self.ctx.driver.run_pod(
                self.name,
                self.namespace,
                self.uid,
                containers=(),
                host_network=m.host_network,
                labels=dict(m.labels),
                sandbox_attempt=attempt,
                annotations=dict(m.annotations),
                termination_grace_period=m.grace_period,
                check=False,
                share_process_namespace=m.share_process_namespace,
                hostname=(m.hostname or self.name)[:63],
                dns_config=dns,
            )
        except CriCallFailed as exc:
            self._event(WARNING, "FailedCreatePodSandBox", f"Failed to create pod sandbox: {exc}")
            for c in m.all_containers:
                self._waiting[c.name] = ("ContainerCreating", "")
            self.wake(self._scaled(CONFIG_RETRY))
            return None
        self._handles[handle.sandbox_id] = handle
        return SandboxView(handle.sandbox_id, attempt, True, time.time_ns())

    def _handle(self, m: PodManifest, sandbox: SandboxView) -> PodHandle:
        handle = self._handles.get(sandbox.id)
        if handle is None:
            handle = self.ctx.driver.adopt_pod(
                sandbox.id,
                self.name,
                self.namespace,
                self.uid,
                sandbox_attempt=sandbox.attempt,
                host_network=m.host_network,
                labels=dict(m.labels),
                annotations=dict(m.annotations),
                termination_grace_period=m.grace_period,
                share_process_namespace=m.share_process_namespace,
                hostname=(m.hostname or self.name)[:63],
            )
            self._handles[sandbox.id] = handle
        return handle

    def _setup_volumes(self, m: PodManifest) -> str | None:
        """Create the pod's volume directories; an error message if one fails."""
        base = self._pod_dir() / "volumes"
        for v in m.volumes:
            try:
                if v.kind == "emptyDir":
                    path = base / "kubernetes.io~empty-dir" / v.name
                    path.mkdir(parents=True, exist_ok=True)
                    if v.medium == "Memory" and not os.path.ismount(path):
                        options = "mode=0777" + (
                            f",size={v.size_limit_bytes}" if v.size_limit_bytes else ""
                        )
                        subprocess.run(
                            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                            check=True,
                            capture_output=True,
                            text=True,
                        )
                    os.chmod(path, 0o777)
                    if m.fs_group is not None:
                        os.chown(path, -1, m.fs_group)
                        os.chmod(path, 0o2777)
                elif v.kind == "hostPath":
                    host = Path(v.host_path)
                    # A symlink inside an allowed directory must not lead out of it.
                    real = os.path.realpath(host)
                    if not any(
                        real == p or real.startswith(p.rstrip("/") + "/")
                        for p in map(os.path.realpath, self.ctx.host_path_prefixes)
                    ):
                        raise LabError(f"{host} resolves to {real}, outside the lab's host paths")
                    if v.host_type == "DirectoryOrCreate":
                        host.mkdir(parents=True, exist_ok=True)
                    elif v.host_type == "FileOrCreate":
                        host.parent.mkdir(parents=True, exist_ok=True)
                        host.touch(exist_ok=True)
                    elif v.host_type == "Directory" and not host.is_dir():
                        raise LabError(f"hostPath type check failed: {host} is not a directory")
                    elif v.host_type == "File" and not host.is_file():
                        raise LabError(f"hostPath type check failed: {host} is not a file")
            except (OSError, LabError, subprocess.CalledProcessError) as exc:
                detail = getattr(exc, "stderr", "") or str(exc)
                return f'MountVolume.SetUp failed for volume "{v.name}" : {str(detail).strip()}'
        return None

    # -- init containers -----------------------------------------------------

    def _sync_init(
        self, m: PodManifest, rt: PodRuntime, handle: PodHandle, sandbox: SandboxView
    ) -> tuple[str, bool]:
        """Walk the init containers in order: ("done"|"waiting"|"failed", acted)."""
        for c in m.init_containers:
            inst = rt.in_sandbox(c.name, sandbox.id)
            if c.sidecar:
                if inst is None:
                    return "waiting", self._start(m, c, rt, handle, sandbox)
                if inst.running:
                    if self._is_started(c, inst):
                        continue
                    return "waiting", False
                return "waiting", self._restart(m, c, inst, rt, handle, sandbox)
            if inst is None:
                return "waiting", self._start(m, c, rt, handle, sandbox)
            if inst.running:
                return "waiting", False
            if inst.exited and inst.exit_code == 0:
                continue
            if m.restart_policy == "Never":
                return "failed", False
            return "waiting", self._restart(m, c, inst, rt, handle, sandbox)
        return "done", False

    # -- sidecars and app containers ------------------------------------------

    def _sync_running(
        self, m: PodManifest, rt: PodRuntime, handle: PodHandle, sandbox: SandboxView
    ) -> bool:
        acted = False
        for c in m.init_containers:
            if not c.sidecar:
                continue
            inst = rt.in_sandbox(c.name, sandbox.id)
            if inst is None:
                acted = self._start(m, c, rt, handle, sandbox) or acted
            elif inst.running:
                acted = self._check_running(m, c, inst) or acted
            else:
                # Sidecars restart on any exit, whatever the pod's policy.
                acted = self._restart(m, c, inst, rt, handle, sandbox) or acted
        for c in m.containers:
            inst = rt.in_sandbox(c.name, sandbox.id)
            if inst is None:
                before = rt.latest(c.name)
                if before is None:
                    acted = self._start(m, c, rt, handle, sandbox) or acted
                elif _should_restart(m.restart_policy, before.exit_code):
                    acted = self._restart(m, c, before, rt, handle, sandbox) or acted
            elif inst.running:
                acted = self._check_running(m, c, inst) or acted
            elif _should_restart(m.restart_policy, 1 if inst.created_only else inst.exit_code):
                acted = self._restart(m, c, inst, rt, handle, sandbox) or acted
        return acted

    def _check_running(self, m: PodManifest, c: ContainerManifest, inst: RuntimeContainer) -> bool:
        """Kill a running container kubelet would kill: failed probes, a changed spec."""
        if inst.spec_hash and inst.spec_hash != c.spec_hash:
            self._kill(
                inst, c, f"Container {c.name} definition changed, will be restarted", m.grace_period
            )
            return True
        for kind, probe in ((STARTUP, c.startup), (LIVENESS, c.liveness)):
            worker = self._probes.get((inst.id, kind))
            if probe is not None and worker is not None and worker.result is False:
                grace = (
                    probe.termination_grace
                    if probe.termination_grace is not None
                    else m.grace_period
                )
                self._kill(
                    inst,
                    c,
                    f"Container {c.name} failed {kind.lower()} probe, will be restarted",
                    grace,
                )
                return True
        return False

    # -- starting ----------------------------------------------------------------

    def _restart(
        self,
        m: PodManifest,
        c: ContainerManifest,
        dead: RuntimeContainer,
        rt: PodRuntime,
        handle: PodHandle,
        sandbox: SandboxView,
    ) -> bool:
        """Start a new instance unless the container is backing off."""
        finished = _ns_to_s(dead.finished_at or dead.created_at)
        now = time.time()
        key = self._backoff_key(c)
        waiting = self.ctx.backoff.remaining(key, finished, now)
        if waiting is not None:
            left, step = waiting
            self._waiting[c.name] = (
                "CrashLoopBackOff",
                crash_loop_message(step, c.name, self._pod_label()),
            )
            self._event(
                WARNING,
                "BackOff",
                f"Back-off restarting failed container {c.name} in pod {self._pod_label()}",
                c,
            )
            self.wake(left)
            return False
        # Reserve the next back-off only once the image and config are
        # there; a container that cannot even be created is not a crash.
        if not self._start(m, c, rt, handle, sandbox):
            return False
        self.ctx.backoff.next(key, finished, now)
        return True

    def _image(self, c: ContainerManifest) -> api_pb2.Image | None:
        image = self.ctx.driver.image_status(c.image)
        if image is not None:
            self._pull_failures.pop(c.name, None)
            self._event(
                NORMAL, "Pulled", f'Container image "{c.image}" already present on machine', c
            )
            return image
        ref = normalize_image_ref(c.image)
        if c.pull_policy == "Never":
            message = f'Container image "{c.image}" is not present with pull policy of Never'
            self._waiting[c.name] = ("ErrImageNeverPull", message)
            self._event(WARNING, "ErrImageNeverPull", message, c)
            self.wake(self._scaled(CONFIG_RETRY))
            return None
        failures, next_try = self._pull_failures.get(c.name, (0, 0.0))
        now = time.time()
        if now < next_try:
            message = f'Back-off pulling image "{c.image}"'
            self._waiting[c.name] = ("ImagePullBackOff", message)
            self._event(NORMAL, "BackOff", message, c)
            self._event(WARNING, "Failed", "Error: ImagePullBackOff", c)
            self.wake(next_try - now)
            return None
        failures += 1
        # Kubelet's image pull back-off has the restart back-off's numbers.
        delay = self._scaled(backoff_for_restarts(failures).total_seconds())
        self._pull_failures[c.name] = (failures, now + delay)
        message = (
            f'Failed to pull image "{c.image}": {ref} is not in the lab\'s image store and '
            "the lab cannot pull (no registry is reachable); build and import it first"
        )
        self._waiting[c.name] = ("ErrImagePull", message)
        self._event(NORMAL, "Pulling", f'Pulling image "{c.image}"', c)
        self._event(WARNING, "Failed", message, c)
        self._event(WARNING, "Failed", "Error: ErrImagePull", c)
        # Kubelet's pod worker comes back to a failed sync well before the
        # pull back-off ends; that is when ImagePullBackOff shows.
        self.wake(delay / 2)
        return None

    def _env(self, m: PodManifest, c: ContainerManifest, sandbox: SandboxView) -> dict[str, str]:
        pod_ip = self.ctx.node_ip if m.host_network else sandbox.ip
        values = {
            "metadata.name": self.name,
            "metadata.namespace": self.namespace,
            "metadata.uid": self.uid,
            "spec.nodeName": self.ctx.node_name,
            "spec.serviceAccountName": m.service_account or "default",
            "status.hostIP": self.ctx.node_ip,
            "status.hostIPs": self.ctx.node_ip,
            "status.podIP": pod_ip,
            "status.podIPs": pod_ip,
        }
        env: dict[str, str] = {}
        for source in c.env_from:
            if not source.optional:
                raise ConfigError(f'{source.kind} "{source.name}" not found')
        for var in c.env:
            if var.value is not None:
                env[var.name] = expand(var.value, env)
            elif var.field_path is not None:
                labelled = re.match(
                    r"^metadata\.(labels|annotations)\['([^']+)'\]$", var.field_path
                )
                if labelled:
                    table = m.labels if labelled.group(1) == "labels" else m.annotations
                    env[var.name] = table.get(labelled.group(2), "")
                else:
                    env[var.name] = values[var.field_path]
            elif var.key_ref is not None:
                kind, name, _key, optional = var.key_ref
                if not optional:
                    # The lab API server stores no ConfigMaps or Secrets, so
                    # every reference is to one that does not exist.
                    raise ConfigError(f'{kind} "{name}" not found')
        return env

    def _mounts(self, m: PodManifest, c: ContainerManifest, attempt: int) -> list[MountDef]:
        volumes = {v.name: v for v in m.volumes}
        mounts: list[MountDef] = []
        for mount in c.mounts:
            v = volumes[mount.volume]
            if v.kind == "emptyDir":
                host = self._pod_dir() / "volumes" / "kubernetes.io~empty-dir" / v.name
            else:
                host = Path(v.host_path)
            if mount.sub_path:
                host = host / mount.sub_path
                host.mkdir(parents=True, exist_ok=True)
            mounts.append(MountDef(mount.mount_path, str(host), mount.read_only))
        # Kubelet's termination-log file: one per container instance.
        message_dir = self._pod_dir() / "containers" / c.name
        message_dir.mkdir(parents=True, exist_ok=True)
        message_file = message_dir / f"{os.urandom(4).hex()}-{attempt}"
        message_file.touch()
        os.chmod(message_file, 0o666)
        mounts.append(MountDef(c.termination_message_path, str(message_file)))
        return mounts

    def _definition(
        self, m: PodManifest, c: ContainerManifest, sandbox: SandboxView, attempt: int
    ) -> ContainerDef:
        sec = c.security
        if sec.run_as_non_root:
            if sec.run_as_user is None:
                raise ConfigError(
                    "container has runAsNonRoot and image will run as root "
                    f'(pod: "{self._pod_label()}", container: {c.name})'
                )
            if sec.run_as_user == 0:
                raise ConfigError(
                    "container's runAsUser breaks non-root policy "
                    f'(pod: "{self._pod_label()}", container: {c.name})'
                )
        env = self._env(m, c, sandbox)
        res = c.resources
        resources = None
        if not res.empty:
            request = res.cpu_request_milli
            resources = ResourcesDef(
                # pkg/kubelet/cm: MilliCPUToShares and MilliCPUToQuota.
                cpu_shares=max(2, request * 1024 // 1000) if request else 2,
                cpu_period=100_000 if res.cpu_limit_milli else 0,
                cpu_quota=max(1000, res.cpu_limit_milli * 100) if res.cpu_limit_milli else 0,
                memory_limit_bytes=res.memory_limit_bytes,
            )
        groups = list(m.supplemental_groups) + ([m.fs_group] if m.fs_group is not None else [])
        return ContainerDef(
            name=c.name,
            image=c.image,
            command=[expand(part, env) for part in c.command],
            args=[expand(part, env) for part in c.args],
            env=env,
            working_dir=c.working_dir,
            termination_message_path=c.termination_message_path,
            termination_message_policy=c.termination_message_policy,
            mounts=self._mounts(m, c, attempt),
            ports=[PortDef(number, name, proto) for number, name, proto in c.ports],
            resources=resources,
            security=SecurityDef(
                run_as_user=sec.run_as_user,
                run_as_group=sec.run_as_group,
                supplemental_groups=groups,
                readonly_rootfs=sec.read_only_root,
                no_new_privs=sec.no_new_privs,
            ),
            api_hash=c.spec_hash,
        )

    def _start(
        self,
        m: PodManifest,
        c: ContainerManifest,
        rt: PodRuntime,
        handle: PodHandle,
        sandbox: SandboxView,
    ) -> bool:
        """Pull (find), create and start one new instance of ``c``."""
        retry_at = self._config_retry.get(c.name)
        image = self._image(c)
        if image is None:
            return False
        latest = rt.latest(c.name)
        attempt = latest.attempt + 1 if latest is not None else 0
        try:
            definition = self._definition(m, c, sandbox, attempt)
        except ConfigError as exc:
            self._waiting[c.name] = ("CreateContainerConfigError", str(exc))
            if retry_at is None or time.time() >= retry_at:
                self._event(WARNING, "Failed", f"Error: {exc}", c)
                self._config_retry[c.name] = time.time() + self._scaled(CONFIG_RETRY)
            self.wake(self._scaled(CONFIG_RETRY))
            return False
        self._config_retry.pop(c.name, None)
        try:
            instance = self.ctx.driver.create_container(handle, definition, attempt, image.id)
        except CriCallFailed as exc:
            self._waiting[c.name] = ("CreateContainerError", str(exc))
            self._event(WARNING, "Failed", f"Error: {exc}", c)
            self.wake(self._scaled(CONFIG_RETRY))
            return False
        # kubelet 1.37's words; the container is named by the event's field path.
        self._event(NORMAL, "Created", "Container created", c)
        self._link_log(c.name, instance.id, instance.log_path)
        try:
            self.ctx.driver.start_container(instance.id)
        except CriCallFailed as exc:
            self._event(WARNING, "Failed", f"Error: {exc}", c)
            self._gc_container(rt, c.name, instance.id)
            return True
        self._event(NORMAL, "Started", "Container started", c)
        self._gc_container(rt, c.name, instance.id)
        return True

    def _log_link(self, name: str, cid: str) -> Path:
        # kubelet's /var/log/containers/<pod>_<ns>_<container>-<id>.log
        return self.ctx.container_logs_dir / f"{self.name}_{self.namespace}_{name}-{cid}.log"

    def _link_log(self, name: str, cid: str, log_path: Path) -> None:
        links = self.ctx.container_logs_dir
        links.mkdir(parents=True, exist_ok=True)
        link = self._log_link(name, cid)
        with contextlib.suppress(OSError):
            link.unlink(missing_ok=True)
            link.symlink_to(log_path)

    # -- stopping ---------------------------------------------------------------

    def _stop_container(self, cid: str, grace: float) -> None:
        """SIGTERM, then SIGKILL after ``grace`` nominal seconds (scaled)."""
        wait = self._scaled(max(0.0, grace))
        driver = self.ctx.driver
        if wait <= 0 or abs(wait - round(wait)) < 1e-6:
            driver.stop_container(cid, round(wait))
            return
        # CRI's StopContainer counts whole seconds; a scaled grace period is
        # a fraction, so the signals are sent here the way the runtime would.
        pid = driver.container_pid(cid)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if driver.container_status(cid).status.state != api_pb2.CONTAINER_RUNNING:
                    break
                time.sleep(0.02)
        driver.stop_container(cid, 0)

    def _kill(
        self, inst: RuntimeContainer, c: ContainerManifest | None, message: str, grace: float
    ) -> None:
        self._event(NORMAL, "Killing", message or f"Stopping container {inst.name}", c)
        for key in [k for k in self._probes if k[0] == inst.id]:
            self._probes.pop(key).stop()
        try:
            self._stop_container(inst.id, grace)
        except CriCallFailed as exc:
            if "NotFound" not in str(exc) and "NOT_FOUND" not in str(exc):
                raise

    def _kill_all(self, rt: PodRuntime, m: PodManifest | None, grace: float, message: str) -> None:
        """Stop every running container of the pod: apps together, then init/sidecars."""
        specs = {c.name: c for c in m.all_containers} if m is not None else {}
        running = [i for i in rt.containers if i.running]
        app_names = {c.name for c in m.containers} if m is not None else set()
        waves = [
            [i for i in running if i.name in app_names],
            [i for i in running if i.name not in app_names],
        ]
        for wave in waves:
            if not wave:
                continue
            with ThreadPoolExecutor(max_workers=len(wave)) as pool:
                futures = [
                    pool.submit(self._kill, i, specs.get(i.name), message, grace) for i in wave
                ]
                for future in futures:
                    future.result()

    def _finish(self, m: PodManifest, rt: PodRuntime) -> PodRuntime:
        """A terminal pod: its remaining containers and its sandbox are stopped."""
        if any(i.running for i in rt.containers):
            self._kill_all(rt, m, m.grace_period, "")
        for key in list(self._probes):
            self._probes.pop(key).stop()
        for sb in rt.sandboxes:
            if sb.ready:
                self.ctx.driver.stop_sandbox(sb.id)
        if any(i.running for i in rt.containers) or any(s.ready for s in rt.sandboxes):
            rt = self._read()
        return rt

    def _stop_for_deletion(self, m: PodManifest, pod: JSON, grace: float) -> None:
        """A gracefully deleted pod: stop it, then write its final status, as kubelet does.

        The API object stays Terminating meanwhile; its containers show how
        they ended (exit 0 on SIGTERM, 137 after the grace period) and the
        phase says whether they all succeeded.
        """
        for key in list(self._probes):
            self._probes.pop(key).stop()
        rt = self._read()
        failures: list[BaseException] = []

        def kill() -> None:
            try:
                self._kill_all(rt, m, grace, "")
            except CriCallFailed as exc:
                failures.append(exc)

        killer = threading.Thread(target=kill, name=f"kill-{self.name}", daemon=True)
        killer.start()
        # Each container's end is written as it comes (one exits on SIGTERM at
        # once, another only at the grace period's SIGKILL), as kubelet's
        # relist sees them; the pod stays Running and Terminating meanwhile.
        while killer.is_alive():
            killer.join(STATUS_POLL)
            self._waiting = {}
            with contextlib.suppress(ApiError, CriCallFailed):
                self._write_status(m, pod, self._read(), None)
        if failures:
            raise failures[0]
        rt = self._read()
        for sb in rt.sandboxes:
            if sb.ready:
                with contextlib.suppress(CriCallFailed):
                    self.ctx.driver.stop_sandbox(sb.id)
        rt = self._read()
        if self._terminal is None:
            apps = [rt.latest(c.name) for c in m.containers]
            done = all(i is not None and i.exited and i.exit_code == 0 for i in apps)
            self._terminal = "Succeeded" if done else "Failed"
        self._waiting = {}
        with contextlib.suppress(ApiError):
            self._write_status(m, pod, rt, None)
        # kubelet's status manager deletes the object on its next pass, not
        # in the same breath: the final status is there to be read meanwhile.
        self._stop.wait(self._scaled(FINAL_STATUS_HOLD))

    def _terminate(self, m: PodManifest, grace: float) -> None:
        """The pod was deleted: kill it, remove it from the runtime, delete its files."""
        for key in list(self._probes):
            self._probes.pop(key).stop()
        rt = self._read()
        self._kill_all(rt, m, grace, "")
        for sb in rt.sandboxes:
            with contextlib.suppress(CriCallFailed):
                self.ctx.driver.stop_sandbox(sb.id)
            self.ctx.driver.remove_sandbox(sb.id)
        self.ctx.cache.forget([c.id for c in rt.containers] + [s.id for s in rt.sandboxes])
        remove_pod_files(self.ctx, self.uid)

    # -- garbage ------------------------------------------------------------------

    def _gc_container(self, rt: PodRuntime, name: str, keep: str) -> None:
        """Kubelet's container GC: one dead instance per container is kept."""
        dead = [i for i in rt.instances(name) if not i.running and i.id != keep]
        for old in dead[:-1]:
            try:
                self.ctx.driver.remove_container(old.id)
            except CriCallFailed as exc:
                _log.warning("could not remove dead container %s: %s", old.id[:13], exc)
                continue
            self.ctx.cache.forget([old.id])
            with contextlib.suppress(OSError):
                if old.log_path:
                    Path(old.log_path).unlink(missing_ok=True)
                self._log_link(name, old.id).unlink(missing_ok=True)
                if old.termination_host_path:
                    Path(old.termination_host_path).unlink(missing_ok=True)

    def _gc_sandboxes(self, rt: PodRuntime) -> None:
        latest = rt.latest_sandbox
        used = {c.sandbox_id for c in rt.containers}
        for sb in rt.sandboxes:
            if latest is not None and sb.id != latest.id and not sb.ready and sb.id not in used:
                with contextlib.suppress(CriCallFailed):
                    self.ctx.driver.remove_sandbox(sb.id)
                    self._handles.pop(sb.id, None)
                    self.ctx.cache.forget([sb.id])

    # -- probes ---------------------------------------------------------------------

    def _is_started(self, c: ContainerManifest, inst: RuntimeContainer) -> bool:
        if not inst.running:
            return False
        if c.startup is None:
            return True
        worker = self._probes.get((inst.id, STARTUP))
        return worker is not None and worker.result is True

    def _ensure_probes(self, m: PodManifest, rt: PodRuntime, sandbox: SandboxView | None) -> None:
        live = {i.id for i in rt.containers if i.running}
        for key in [k for k in self._probes if k[0] not in live]:
            self._probes.pop(key).stop()
        if sandbox is None:
            return
        for c in m.all_containers:
            if c.init and not c.sidecar:
                continue
            inst = rt.in_sandbox(c.name, sandbox.id)
            if inst is None or not inst.running:
                continue
            for kind, probe in (
                (STARTUP, c.startup),
                (READINESS, c.readiness),
                (LIVENESS, c.liveness),
            ):
                if probe is None or (inst.id, kind) in self._probes:
                    continue
                if kind == STARTUP and self._startup_done(inst.id):
                    continue
                self._probes[(inst.id, kind)] = self._probe_worker(m, c, inst, sandbox, kind, probe)

    def _startup_done(self, cid: str) -> bool:
        worker = self._probes.get((cid, STARTUP))
        return worker is not None and worker.result is True

    def _pause_alive(self, sandbox: SandboxView) -> bool:
        pid = self._pause_pids.get(sandbox.id)
        if pid is None:
            pid = self.ctx.driver.sandbox_pid(sandbox.id)
            self._pause_pids[sandbox.id] = pid
        # A sandbox without a pause process (CRI-O's drop_infra_ctr) has nothing to lose.
        return pid is None or os.path.exists(f"/proc/{pid}/ns/net")

    def _probe_worker(
        self,
        m: PodManifest,
        c: ContainerManifest,
        inst: RuntimeContainer,
        sandbox: SandboxView,
        kind: str,
        probe: Probe,
    ) -> ProbeWorker:
        if m.host_network:
            target = ProbeTarget(inst.id, "127.0.0.1", None, {})
        else:
            pid = self._pause_pids.get(sandbox.id)
            if pid is None:
                pid = self.ctx.driver.sandbox_pid(sandbox.id)
                self._pause_pids[sandbox.id] = pid
            netns = f"/proc/{pid}/ns/net" if pid else "/nonexistent"
            target = ProbeTarget(inst.id, sandbox.ip, netns, {})
        ports = {name: number for number, name, _ in c.ports if name}
        target = ProbeTarget(target.container_id, target.ip, target.netns, ports)

        def may_run() -> bool:
            return kind == STARTUP or c.startup is None or self._startup_done(inst.id)

        def on_failure(kind_: str, output: str) -> None:
            self._event(WARNING, "Unhealthy", f"{kind_} probe failed: {output}", c)

        return ProbeWorker(
            kind,
            probe,
            target,
            _ns_to_s(inst.started_at) or time.time(),
            driver=self.ctx.driver,
            time_scale=self.ctx.time_scale,
            may_run=may_run,
            on_change=self.wake,
            on_failure=on_failure,
        ).start()

    # -- status ------------------------------------------------------------------------

    def _terminated(self, inst: RuntimeContainer, c: ContainerManifest | None) -> JSON:
        message = self._messages.get(inst.id)
        if message is None:
            host = Path(inst.termination_host_path) if inst.termination_host_path else None
            fallback = c is not None and c.termination_message_policy == "FallbackToLogsOnError"
            message = (
                read_termination_message(host, inst.log_path, fallback and inst.exit_code != 0)
                or inst.message
            )
            if inst.exited:
                self._messages[inst.id] = message
        out: JSON = {
            "exitCode": inst.exit_code,
            "reason": inst.reason or ("Completed" if inst.exit_code == 0 else "Error"),
        }
        if message:
            out["message"] = message
        if inst.started_at:
            out["startedAt"] = rfc3339(_ns_to_s(inst.started_at))
        if inst.finished_at:
            out["finishedAt"] = rfc3339(_ns_to_s(inst.finished_at))
        out["containerID"] = f"{self.ctx.runtime_name}://{inst.id}"
        return out

    def _container_status(self, c: ContainerManifest, rt: PodRuntime, default_reason: str) -> JSON:
        insts = rt.instances(c.name)
        latest = insts[-1] if insts else None
        previous = insts[-2] if len(insts) >= 2 else None
        status: JSON = {
            "name": c.name,
            "image": normalize_image_ref(c.image),
            "imageID": latest.image_ref if latest is not None else "",
            "ready": False,
            "started": False,
            "restartCount": latest.attempt if latest is not None else 0,
            "state": {},
            "lastState": {},
        }
        if latest is not None:
            status["containerID"] = f"{self.ctx.runtime_name}://{latest.id}"
        override = self._waiting.get(c.name)
        if (
            override is not None
            and override[0] == "CrashLoopBackOff"
            and latest is not None
            and latest.id not in self._exit_shown
        ):
            # kubelet writes an exit as it found it (terminated, its reason and
            # code) before the back-off it then decides shows as waiting.
            self._exit_shown.add(latest.id)
            self.wake(self._scaled(EXIT_SHOWN_FOR))
            override = None
        if override is not None and (latest is None or not latest.running):
            reason, message = override
            waiting: JSON = {"reason": reason}
            if message:
                waiting["message"] = message
            status["state"] = {"waiting": waiting}
            if latest is not None:
                status["lastState"] = {"terminated": self._terminated(latest, c)}
            return status
        if latest is None:
            status["state"] = {"waiting": {"reason": default_reason}}
            return status
        if latest.running:
            status["state"] = {"running": {"startedAt": rfc3339(_ns_to_s(latest.started_at))}}
            started = self._is_started(c, latest)
            status["started"] = started
            # A plain init container is ready only once it has completed;
            # kubelet reports it not ready while it runs.
            if started and (not c.init or c.sidecar):
                worker = self._probes.get((latest.id, READINESS))
                status["ready"] = c.readiness is None or (
                    worker is not None and worker.result is True
                )
        elif latest.created_only:
            status["state"] = {"waiting": {"reason": "ContainerCreating"}}
        else:
            status["state"] = {"terminated": self._terminated(latest, c)}
            if c.init and not c.sidecar and latest.exit_code == 0:
                status["ready"] = True
        if previous is not None and not previous.running:
            status["lastState"] = {"terminated": self._terminated(previous, c)}
        return status

    def _phase(self, m: PodManifest, rt: PodRuntime, initialized: bool) -> str:
        if self._terminal is not None:
            return self._terminal
        if self._init_failed:
            return "Failed"
        if not initialized:
            return "Pending"
        running = waiting = stopped = succeeded = 0
        for c in m.containers:
            latest = rt.latest(c.name)
            if latest is None or latest.created_only:
                waiting += 1
            elif latest.running:
                running += 1
            else:
                stopped += 1
                if latest.exit_code == 0:
                    succeeded += 1
        if waiting:
            # A container waiting to restart has run before: kubelet counts it as stopped.
            return "Pending"
        if running:
            return "Running"
        if stopped:
            if m.restart_policy == "Always":
                return "Running"
            if stopped == succeeded:
                return "Succeeded"
            if m.restart_policy == "Never":
                return "Failed"
            return "Running"
        return "Pending"

    def _condition(
        self, type_: str, ok: bool, reason: str = "", message: str = "", *, true_reason: str = ""
    ) -> JSON:
        status = "True" if ok else "False"
        previous = self._transitions.get(type_)
        if previous is None or previous[0] != status:
            self._transitions[type_] = (status, rfc3339())
        cond: JSON = {
            "type": type_,
            "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": self._transitions[type_][1],
        }
        if not ok and reason:
            cond["reason"] = reason
        if ok and true_reason:
            cond["reason"] = true_reason
        if not ok and message:
            cond["message"] = message
        return cond

    def _write_status(
        self, m: PodManifest, pod: JSON, rt: PodRuntime, sandbox: SandboxView | None
    ) -> None:
        has_init = bool(m.init_containers)
        default_reason = "PodInitializing" if has_init else "ContainerCreating"
        init_statuses = [self._container_status(c, rt, default_reason) for c in m.init_containers]
        app_statuses = [self._container_status(c, rt, default_reason) for c in m.containers]
        latest_sb = rt.latest_sandbox
        current = latest_sb if latest_sb is not None and latest_sb.ready else None
        initialized = not has_init or (
            latest_sb is not None and self._initialized_in == latest_sb.id and not self._init_failed
        )
        if m.unsupported:
            initialized = not has_init
        if self._terminal is not None:
            phase = self._terminal
        elif m.unsupported:
            phase = "Pending"
        else:
            phase = self._phase(m, rt, initialized)

        incomplete = []
        for c, st in zip(m.init_containers, init_statuses, strict=True):
            if c.sidecar:
                if not st["started"]:
                    incomplete.append(c.name)
            elif not st["ready"]:
                incomplete.append(c.name)
        unready = [
            st["name"]
            for c, st in zip(m.all_containers, init_statuses + app_statuses, strict=True)
            if (not c.init or c.sidecar) and not st["ready"]
        ]
        terminal = phase in ("Succeeded", "Failed")
        conditions = [
            self._condition(
                "PodReadyToStartContainers",
                current is not None,
                "PodSandboxNotReady",
                # kubelet's words for why a sandbox must be made.
                "no pod sandbox exists" if latest_sb is None else "pod sandbox is not ready",
            ),
            self._condition(
                "Initialized",
                initialized,
                "ContainersNotInitialized",
                f"containers with incomplete status: [{' '.join(incomplete)}]",
                true_reason="PodCompleted" if phase == "Succeeded" else "",
            ),
        ]
        ready_reason = {"Succeeded": "PodCompleted", "Failed": "PodFailed"}.get(
            phase, "ContainersNotReady"
        )
        ready_message = "" if terminal else f"containers with unready status: [{' '.join(unready)}]"
        ready = not unready and not terminal
        conditions.append(self._condition("Ready", ready, ready_reason, ready_message))
        conditions.append(self._condition("ContainersReady", ready, ready_reason, ready_message))
        scheduled = next(
            (
                c
                for c in (pod.get("status") or {}).get("conditions") or []
                if isinstance(c, dict) and c.get("type") == "PodScheduled"
            ),
            None,
        )
        conditions.append(
            dict(scheduled)
            if scheduled is not None
            else {
                "type": "PodScheduled",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": self._start_time,
            }
        )
        status: JSON = {
            "phase": phase,
            "conditions": conditions,
            "hostIP": self.ctx.node_ip,
            "hostIPs": [{"ip": self.ctx.node_ip}],
            "startTime": self._start_time,
            "containerStatuses": app_statuses,
        }
        if has_init:
            status["initContainerStatuses"] = init_statuses
        ip = self.ctx.node_ip if m.host_network else (latest_sb.ip if latest_sb is not None else "")
        if not ip and self._last_status is not None:
            ip = self._last_status.get("podIP") or ""
        if ip:
            status["podIP"] = ip
            status["podIPs"] = [{"ip": ip}]
        if self._terminal_reason is not None:
            status["reason"], status["message"] = self._terminal_reason
        if status == self._last_status:
            return
        try:
            self.ctx.api.patch_pod_status(self.namespace, self.name, status)
        except ApiError as exc:
            if exc.code == 404:
                return
            raise
        self._last_status = status


def remove_pod_files(ctx: KubeletContext, uid: str) -> None:
    """Delete what the kubelet keeps on disk for a pod: volumes, logs, log links."""
    pod_dir = ctx.pods_dir / uid
    volumes = pod_dir / "volumes"
    if volumes.exists():
        for path in volumes.glob("*/*"):
            if os.path.ismount(path):
                subprocess.run(["umount", str(path)], check=False, capture_output=True)
    shutil.rmtree(pod_dir, ignore_errors=True)
    log_dirs = [str(d) for d in ctx.pod_logs_dir.glob(f"*_{uid}")]
    for d in log_dirs:
        shutil.rmtree(d, ignore_errors=True)
    if ctx.container_logs_dir.exists():
        for link in ctx.container_logs_dir.iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(link)
                if any(target.startswith(d + "/") for d in log_dirs):
                    link.unlink()
