"""The pods of this node: the joined views, and everything decided about a pod.

One place decides how the runtime snapshot and the pod cache are joined
(which node, whether the API view is current, the mismatch grace period), so
the pod routes, the logs, the diagnosis and kill-and-watch all see the same
pods. The same goes for what is decided about one pod: whether it needs
attention, which attempt ``kubectl logs --previous`` means and where its log
is, the log read itself (from the file, or the lines kept at exit), and the
process facts of the pod detail (trees, namespaces shared with the pause).

A services module: it may import the rules (their thresholds), the domain, the
adapters, the errors and the settings; never the HTTP layer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from agent import host
from agent.diagnose import DEFAULT_THRESHOLDS
from agent.domain.kubemodel import ApiPod
from agent.domain.model import Container, ProcessNode
from agent.domain.podview import ContainerView, PodView, build_pod_view, build_pod_views
from agent.domain.times import aware
from agent.errors import InvalidInput, NotFound, ProcessGone
from agent.kube import PodCacheLike
from agent.logs import DEFAULT_MAX_BYTES, LastWords, TailResult, previous_log_path, tail
from agent.services.node import Snapshot
from agent.settings import Settings

# kubectl STATUS strings that need no attention by themselves.
_QUIET_STATUSES = frozenset({"Running", "Completed", "Succeeded"})


def node_pod_views(
    settings: Settings,
    pods: PodCacheLike,
    snap: Snapshot,
    now: datetime | None = None,
    memo: PodViewMemo | None = None,
) -> list[PodView]:
    """Every pod of this node; with ``memo``, the last join is reused while it holds."""
    now = now or datetime.now(UTC)
    mapping = pods.pods
    api_synced = pods.health.state == "ok"
    second = int(now.timestamp())
    if memo is not None:
        cached = memo.lookup(snap, mapping, api_synced, second)
        if cached is not None:
            return list(cached)
    views = build_pod_views(
        mapping,
        snap.sandboxes,
        snap.containers,
        node_name=settings.node_name,
        api_synced=api_synced,
        now=now,
        grace=timedelta(seconds=settings.mismatch_grace_seconds),
    )
    if memo is not None:
        memo.store(snap, mapping, api_synced, second, views)
    return views


class PodViewMemo:
    """The last node-wide join, kept while its inputs are unchanged.

    Both inputs are replaced, never changed in place: the refresh loop makes
    a new snapshot and the pod cache swaps in a new mapping on every change,
    so identity tells whether they changed. The clock enters at one-second
    resolution, the finest that any age string or grace period shows. Routes
    run in worker threads; the entry is one tuple, replaced whole.
    """

    def __init__(self) -> None:
        self._entry: tuple[Snapshot, Mapping[str, ApiPod], bool, int, tuple[PodView, ...]] | None
        self._entry = None

    def lookup(
        self, snap: Snapshot, pods: Mapping[str, ApiPod], api_synced: bool, second: int
    ) -> tuple[PodView, ...] | None:
        """The kept join if these very inputs, in this second, made it; else None."""
        entry = self._entry
        if entry is None:
            return None
        e_snap, e_pods, e_synced, e_second, views = entry
        if e_snap is snap and e_pods is pods and e_synced == api_synced and e_second == second:
            return views
        return None

    def store(
        self,
        snap: Snapshot,
        pods: Mapping[str, ApiPod],
        api_synced: bool,
        second: int,
        views: list[PodView],
    ) -> None:
        """Keep this join and its inputs, replacing the last."""
        self._entry = (snap, pods, api_synced, second, tuple(views))


def node_pod_view(
    settings: Settings,
    pods: PodCacheLike,
    snap: Snapshot,
    namespace: str,
    name: str,
    now: datetime | None = None,
) -> PodView:
    """One pod of this node, or NotFound naming it."""
    view = build_pod_view(
        pods.pods,
        snap.sandboxes,
        snap.containers,
        namespace=namespace,
        name=name,
        node_name=settings.node_name,
        api_synced=pods.health.state == "ok",
        now=now or datetime.now(UTC),
        grace=timedelta(seconds=settings.mismatch_grace_seconds),
    )
    if view is None:
        raise NotFound(
            f"no pod {namespace}/{name} on this node (neither the API server nor the runtime "
            "knows it here)",
            namespace=namespace,
            name=name,
        )
    return view


# --------------------------------------------------------------------------
# Which pods need attention
# --------------------------------------------------------------------------


def needs_attention(view: PodView, now: datetime | None = None) -> bool:
    """A status kubectl would flag, not all ready, a mismatch, or a recent or pending restart."""
    if view.mismatches or view.status not in _QUIET_STATUSES:
        return True
    if view.status == "Running" and "/" in view.ready:
        ready, total = view.ready.split("/", 1)
        if ready != total:
            return True
    when = aware(now or datetime.now(UTC))
    for c in view.containers:
        if c.restart_count > 0 and c.state != "running":
            return True
        # A container that crashes after running a while shows Running most of
        # the time; its last exit is what the crashloop rule looks at.
        last = c.api_status.last_state if c.api_status is not None else None
        if (
            last is not None
            and last.is_terminated
            and last.finished_at is not None
            and when - aware(last.finished_at) <= DEFAULT_THRESHOLDS.recent_exit
        ):
            return True
    return False


# --------------------------------------------------------------------------
# Attempts and their logs
# --------------------------------------------------------------------------


def previous_instance(c: ContainerView) -> Container | None:
    """The instance ``kubectl logs --previous`` reads: the one the API's lastState names.

    In CrashLoopBackOff that is the attempt that just exited (the runtime's
    newest); without the API, the newest attempt before the current one.
    """
    last = c.api_status.last_state if c.api_status is not None else None
    if last is not None and last.is_terminated and last.container_id:
        bare = last.container_id.split("://", 1)[-1]
        for candidate in (c.current, *c.attempts):
            if candidate is not None and candidate.id == bare:
                return candidate
    return c.attempts[0] if c.attempts else None


@dataclass(frozen=True, slots=True)
class AttemptLog:
    """Which attempt of a container is meant, and the log file that holds it (if any)."""

    attempt: int | None
    path: Path | None


def attempt_log(c: ContainerView, *, previous: bool, log_roots: Sequence[Path]) -> AttemptLog:
    """The current attempt's log, or the previous one's as ``kubectl logs --previous`` finds it.

    When the runtime no longer holds the dead container, its file may remain
    beside the current one (``<attempt>.log``), looked for only under
    ``log_roots``.
    """
    wanted = previous_instance(c) if previous else c.current
    if wanted is not None:
        return AttemptLog(wanted.attempt, Path(wanted.log_path) if wanted.log_path else None)
    current = c.current
    if previous and current is not None and current.log_path and current.attempt > 0:
        try:
            path = previous_log_path(
                Path(current.log_path), current.attempt, allowed_roots=log_roots
            )
        except InvalidInput:
            path = None  # outside the log directories: as good as gone
        return AttemptLog(current.attempt - 1, path)
    return AttemptLog(None, None)


def choose_container(view: PodView, name: str | None) -> ContainerView:
    """The container a request names; with no name, the pod's only container."""
    containers = view.containers
    names = [c.name for c in containers]
    where = f"{view.namespace}/{view.name}"
    if name is None:
        if len(containers) == 1:
            return containers[0]
        raise InvalidInput(
            f"pod {where} has {len(names)} containers; choose one with ?container= "
            f"({', '.join(names)})",
            containers=names,
        )
    for c in containers:
        if c.name == name:
            return c
    raise NotFound(
        f"pod {where} has no container {name!r}; its containers: {', '.join(names) or 'none'}",
        containers=names,
    )


@dataclass(frozen=True, slots=True)
class LogRead:
    """Lines of one attempt's log, and where they came from."""

    container: str
    attempt: int | None
    source: Literal["file", "kept-after-exit"]
    result: TailResult


def read_log(
    view: PodView,
    container: str | None,
    *,
    previous: bool,
    lines: int,
    log_roots: tuple[Path, ...],
    last_words: LastWords,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> LogRead:
    """The last ``lines`` of a container's log: from its file, else from the lines kept at exit.

    Only files under ``log_roots`` are read, wherever the runtime says the
    log is: a path that resolves elsewhere is refused (InvalidInput). At most
    ``max_bytes`` of the files are read. Blocking (file reads): call it from
    a worker thread.
    """
    chosen = choose_container(view, container)
    located = attempt_log(chosen, previous=previous, log_roots=log_roots)
    result: TailResult | None = None
    if located.path is not None:
        try:
            result = tail(located.path, lines, allowed_roots=log_roots, max_bytes=max_bytes)
        except NotFound:
            result = None
    if result is not None:
        return LogRead(chosen.name, located.attempt, "file", result)
    if located.attempt is not None:
        kept = last_words.recall(view.runtime_uid or view.uid, chosen.name, located.attempt)
        if kept is not None:
            kept = dataclasses.replace(
                kept,
                lines=kept.lines[-lines:],
                truncated=kept.truncated or len(kept.lines) > lines,
            )
            return LogRead(chosen.name, located.attempt, "kept-after-exit", kept)
    which = "previous attempt" if previous else "current attempt"
    raise NotFound(
        f"no log for the {which} of container {chosen.name} in {view.namespace}/{view.name}"
        + ("" if chosen.current else ": the runtime holds no container for it yet"),
        container=chosen.name,
    )


# --------------------------------------------------------------------------
# Processes of a pod
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProcessFacts:
    """What /proc shows of a pod: each container's process tree and shared namespaces."""

    trees: Mapping[str, ProcessNode]
    # Per container: namespace kind -> whether it is the pause process's.
    shares_with_pause: Mapping[str, Mapping[str, bool]]
    # Namespaces the pause process shares with the whole node; None if unknown.
    pause_shares_with_host: list[str] | None
    # Why some of the sharing above is unknown; None when all of it is shown.
    sharing_unknown: str | None = None


def _unreadable_namespaces(what: str, pids: str, proc_root: Path) -> str:
    """Why the namespace links of ``what`` (PID ``pids``) could not be read, for a person."""
    where = f"the namespaces of {what} (PID {pids}) are not readable"
    if host.has_capability("SYS_PTRACE", proc_root) is False:
        return (
            f"{where} without CAP_SYS_PTRACE, which this agent runs without; add it with "
            "the DaemonSet's components/ptrace to see which namespaces are shared"
        )
    return (
        f"{where}: the kernel refused the ptrace read check (a process of another user, "
        "or under an AppArmor profile that does not allow it)"
    )


def process_facts(view: PodView, proc_root: Path) -> ProcessFacts:
    """Process trees, and which namespaces each container shares with the pause process.

    What cannot be read (namespace links need ptrace read access) stays
    unknown, and ``sharing_unknown`` says why.
    """
    pause_ns: dict[str, int] | None = None
    unknown: list[str] = []
    sandbox = view.current_sandbox
    pinned: dict[str, int] = {}
    if sandbox is not None and sandbox.pause_pid is None:
        pinned = _pinned_namespaces(view)
    if pinned:
        # CRI-O without an infra container: the pod's namespaces are pinned
        # files the runtime names in each container's spec; a namespace no
        # spec names is each container's own.
        pause_ns = pinned
    elif sandbox is None or sandbox.pause_pid is None:
        note = sandbox.pause_pid_note if sandbox is not None else None
        unknown.append(f"no pause process to compare with ({note or 'no running sandbox'})")
    else:
        pause = str(sandbox.pause_pid)
        try:
            pause_ns = host.read_process(sandbox.pause_pid, proc_root).namespaces
        except ProcessGone:
            unknown.append(f"the pause process (PID {pause}) has exited")
        if pause_ns == {}:
            unknown.append(_unreadable_namespaces("the pause process", pause, proc_root))
    with_host = _shared_with_host(pause_ns, proc_root) if pause_ns and not pinned else None
    if pause_ns and not pinned and with_host is None:
        unknown.append(_unreadable_namespaces("the node's own processes", "1 and 2", proc_root))
    parents = host.parent_map(proc_root)
    trees: dict[str, ProcessNode] = {}
    shares: dict[str, dict[str, bool]] = {}
    for container in view.containers:
        if container.pid is None:
            continue
        try:
            tree = host.process_tree(container.pid, proc_root, parents=parents)
        except ProcessGone:
            continue
        trees[container.name] = tree
        if pause_ns:
            mine = tree.process.namespaces
            if not mine:
                what = f"container {container.name}"
                unknown.append(_unreadable_namespaces(what, str(container.pid), proc_root))
                continue
            kinds = sorted(mine) if pinned else sorted(pause_ns)
            shares[container.name] = {
                kind: mine.get(kind) == pause_ns.get(kind) for kind in kinds if kind in mine
            }
    return ProcessFacts(trees, shares, with_host, "; ".join(unknown) or None)


# OCI runtime-spec namespace types -> the names of /proc/<pid>/ns links.
_SPEC_TO_PROC = {"network": "net", "mount": "mnt"}


def _pinned_namespaces(view: PodView) -> dict[str, int]:
    """The pod's namespaces as pinned files the containers' specs name: kind -> inode."""
    found: dict[str, int] = {}
    for container in view.containers:
        current = container.current
        if current is None:
            continue
        for ns in current.namespaces:
            kind = _SPEC_TO_PROC.get(ns.type, ns.type)
            if ns.path is None or kind in found or ns.path.startswith("/proc/"):
                continue
            with contextlib.suppress(OSError):
                found[kind] = os.stat(ns.path).st_ino
    return found


def _shared_with_host(namespaces: Mapping[str, int], root: Path) -> list[str] | None:
    """Which of these namespaces are the node's initial ones, or None if unknown.

    kthreadd (PID 2, parent 0) lives in every initial namespace and stays
    readable where PID 1 may not be; without it (an agent outside the host
    PID namespace) PID 1 of the agent's view answers for that view.
    """
    reference: dict[str, int] = {}
    for pid in (2, 1):
        try:
            info = host.read_process(pid, root)
        except ProcessGone:
            continue
        if pid == 2 and (info.ppid != 0 or info.name != "kthreadd"):
            continue
        reference = info.namespaces
        if reference:
            break
    if not reference:  # unreadable without ptrace rights over the process
        return None
    return sorted(kind for kind, inode in namespaces.items() if reference.get(kind) == inode)
