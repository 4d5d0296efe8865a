"""Gathering what the diagnosis rules look at, from the node and the API server.

The rules in ``agent.diagnose`` are pure; this module does their I/O: the
pod's events and its namespace's Services (API server, cached briefly), the
last log lines of the containers that need attention (CRI log files, or what
was kept at their exit), whether the node holds an image that fails to pull
(CRI ImageStatus), which ports listen inside the pod's network namespace,
and the cgroup's OOM kill count. Every fact that cannot be had stays
``None`` ("unknown"), never a guess; a failing source never fails the
diagnosis.

A services module: imports every adapter, the rules' input types, the domain, the errors,
the settings and ``pods``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from agent import host
from agent.cri import RuntimeClient
from agent.diagnose import ContainerLogs, DiagnosisInput
from agent.domain.kubemodel import ApiEvent
from agent.domain.model import Container, ContainerState
from agent.domain.podview import ContainerView, PodView
from agent.errors import AgentError
from agent.kube import PodCacheLike
from agent.logs import LastWords, TailMemo
from agent.services.pods import attempt_log, needs_attention
from agent.settings import Settings

log = logging.getLogger(__name__)

LOG_LINES = 10
_IMAGE_REASONS = {"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName"}


def _declared_tcp_ports(view: PodView) -> set[int]:
    pod = view.pod
    return {
        port.container_port
        for spec in ((pod.init_containers + pod.containers) if pod else ())
        for port in spec.ports
        if port.protocol.upper() == "TCP"
    }


def worth_diagnosing(view: PodView, now: datetime | None = None) -> bool:
    """Worth diagnosing: it needs attention, or it runs with something only the node can check.

    That is a declared TCP port (does anything listen?) or a memory limit
    (did the OOM killer strike inside?); those checks read /proc and the
    cgroup only (see ``_node_facts``).
    """
    if needs_attention(view, now):
        return True
    if view.status != "Running":
        return False
    if _declared_tcp_ports(view):
        return True
    return any(
        c.spec is not None and "memory" in c.spec.limits and c.pid is not None
        for c in view.containers
    )


def _container_needs_logs(c: ContainerView, closed_ports: set[int]) -> bool:
    if c.state != "running" or c.ready is False or c.restart_count > 0:
        return True
    if c.spec is not None and any(p.container_port in closed_ports for p in c.spec.ports):
        return True
    return c.role is not None and c.role.value == "init"


def _tail_text(path: Path, lines: int, tails: TailMemo) -> tuple[str, ...]:
    with contextlib.suppress(AgentError, OSError):
        return tails.lines(path, lines)
    return ()


def _logs_for(
    c: ContainerView, uid: str, last_words: LastWords, tails: TailMemo, log_roots: Sequence[Path]
) -> ContainerLogs:
    current: Container | None = c.current
    now_lines: tuple[str, ...] = ()
    source = ""
    if current is not None and current.log_path:
        now_lines = _tail_text(Path(current.log_path), LOG_LINES, tails)
        source = current.log_path
    before: tuple[str, ...] = ()
    before_source = ""
    previous = attempt_log(c, previous=True, log_roots=log_roots)
    before_attempt = previous.attempt
    if previous.path is not None:
        before = _tail_text(previous.path, LOG_LINES, tails)
        before_source = str(previous.path)
    if not before and before_attempt is not None:
        kept = last_words.recall(uid, c.name, before_attempt)
        if kept is not None:
            before = tuple(line.text for line in kept.lines[-LOG_LINES:])
            before_source = "lines kept after exit"
    return ContainerLogs(now_lines, before, before_attempt, source, before_source)


def _listening(view: PodView, proc_root: Path) -> dict[int, bool] | None:
    declared = _declared_tcp_ports(view)
    if not declared:
        return None
    sandbox = view.current_sandbox
    pids = [sandbox.pause_pid] if sandbox is not None and sandbox.pause_pid else []
    pids += [c.pid for c in view.containers if c.pid is not None]
    for pid in pids:
        try:
            ports = host.listening_tcp_ports(pid, proc_root)
        except AgentError:
            continue
        answer = {port: port in ports for port in declared}
        answer.update({port: True for port in ports})
        return answer
    return None


def _oom_kills(view: PodView, proc_root: Path) -> dict[str, int] | None:
    counts: dict[str, int] = {}
    for c in view.containers:
        if c.pid is None or c.current is None or c.current.state != ContainerState.RUNNING:
            continue
        with contextlib.suppress(AgentError, OSError):
            count = host.oom_kill_count(c.pid, proc_root)
            if count is not None:
                counts[c.name] = count
    return counts or None


_ApiFacts = tuple[tuple[ApiEvent, ...], frozenset[str] | None]
_NodeFacts = tuple[dict[str, ContainerLogs], dict[int, bool] | None, dict[str, int] | None]


def _wants_api(view: PodView, pods: PodCacheLike, now: datetime) -> bool:
    # A pod that looks well is checked on the node only (ports, OOM counter):
    # no rule reads its events, and asking the API server per pod is not free.
    return view.api_known and pods.health.state == "ok" and needs_attention(view, now)


def _api_facts(view: PodView, pods: PodCacheLike) -> _ApiFacts:
    """Events, and the namespace's Services for a pod with init containers."""
    events: tuple[ApiEvent, ...] = ()
    services: frozenset[str] | None = None
    try:
        events = pods.events_for(view.namespace, view.uid)
    except AgentError as exc:
        log.info("events of %s/%s unavailable: %s", view.namespace, view.name, exc.message)
    pod = view.pod
    if pod is not None and pod.init_containers:
        with contextlib.suppress(AgentError):
            services = pods.services_in(view.namespace)
    return events, services


def _node_facts(
    view: PodView, settings: Settings, last_words: LastWords, tails: TailMemo
) -> _NodeFacts:
    """What the node itself shows: listening ports, log lines, OOM counters."""
    listening = _listening(view, settings.proc_root)
    closed = {port for port, ok in (listening or {}).items() if not ok}
    uid = view.runtime_uid or view.uid
    logs = {
        c.name: _logs_for(c, uid, last_words, tails, settings.log_roots)
        for c in view.containers
        if _container_needs_logs(c, closed)
    }
    return logs, listening, _oom_kills(view, settings.proc_root)


async def _images_present(view: PodView, client: RuntimeClient | None) -> dict[str, bool] | None:
    if client is None:
        return None
    wanted = {
        c.spec.image
        for c in view.containers
        if c.spec is not None
        and c.spec.image
        and c.api_status is not None
        and c.api_status.state.kind == "waiting"
        and c.api_status.state.reason in _IMAGE_REASONS
    }
    if not wanted:
        return None
    answer: dict[str, bool] = {}
    for image in sorted(wanted):
        with contextlib.suppress(AgentError):
            answer[image] = await client.image_present(image)
    return answer or None


def _input(
    view: PodView,
    api: _ApiFacts | None,
    node: _NodeFacts,
    images: dict[str, bool] | None,
    pods: PodCacheLike,
    settings: Settings,
    now: datetime,
) -> DiagnosisInput:
    events, services = api if api is not None else ((), None)
    logs, listening, oom_kills = node
    return DiagnosisInput(
        pod=view.pod,
        view=view,
        events=events,
        logs=logs,
        services=services,
        images_present=images,
        listening=listening,
        oom_kills=oom_kills,
        node_name=settings.node_name,
        now=now,
        api_available=pods.health.state == "ok",
    )


async def gather_many(
    views: Sequence[PodView],
    pods: PodCacheLike,
    client: RuntimeClient | None,
    settings: Settings,
    last_words: LastWords,
    now: datetime,
    tails: TailMemo,
) -> list[DiagnosisInput]:
    """The evidence of every pod in ``views``, in their order.

    API reads may wait on the API server, so each pod's run in a worker
    thread of its own. The node's own reads (files under /proc, /sys and the
    log directories) are short and run one pod after another in a single
    thread: a thread per pod cost more in hand-offs than it saved.
    """

    async def api_of(view: PodView) -> _ApiFacts | None:
        if not _wants_api(view, pods, now):
            return None  # decided here, so that no thread is taken for it
        return await asyncio.to_thread(_api_facts, view, pods)

    def node_of_all() -> list[_NodeFacts]:
        return [_node_facts(v, settings, last_words, tails) for v in views]

    api, node, images = await asyncio.gather(
        asyncio.gather(*(api_of(v) for v in views)),
        asyncio.to_thread(node_of_all),
        asyncio.gather(*(_images_present(v, client) for v in views)),
    )
    return [
        _input(v, a, n, i, pods, settings, now)
        for v, a, n, i in zip(views, api, node, images, strict=True)
    ]
