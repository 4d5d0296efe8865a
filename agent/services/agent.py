"""The agent as one object: everything it runs, built once from Settings.

Owns the node state and its refresh loop, the pod cache (list, then watch),
the joined pod views, the last lines of dead attempts (kept at their exit),
the log tail memo, kill-and-watch runs and the metrics. The HTTP routes call
its methods and map what they return to the wire; nothing else holds these.

A services module: it may import the rules, the adapters, the domain, the
errors and the settings, never the HTTP layer.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent import host
from agent.diagnose import DEFAULT_THRESHOLDS, SEVERITY_RANK, Finding, Thresholds, diagnose
from agent.domain.kubemodel import ApiEvent, ApiPod
from agent.domain.model import Container, ProcessInfo, ProcessNode, Sandbox
from agent.domain.podview import PodView
from agent.errors import AgentError, ApiServerError, NotFound, ProcessGone
from agent.kube import PodCacheLike, pod_cache_from_settings
from agent.logs import AttemptKey, LastWords, TailMemo
from agent.services import evidence
from agent.services.heal import AuditLog, HealManager
from agent.services.metrics import Metrics
from agent.services.node import NodeState, ProcessOwner, Snapshot
from agent.services.pods import (
    LogRead,
    PodViewMemo,
    ProcessFacts,
    needs_attention,
    node_pod_view,
    node_pod_views,
    process_facts,
    read_log,
)
from agent.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PodDetail:
    """One pod with what the node shows of its processes and what the API says happened."""

    view: PodView
    processes: ProcessFacts
    events: tuple[ApiEvent, ...]
    # Why the events could not be read; None when they were (or the API knows no such pod).
    events_error: str | None


@dataclass(frozen=True, slots=True)
class ContainerDetail:
    """One container with its process tree, if it still runs."""

    container: Container
    tree: ProcessNode | None


@dataclass(frozen=True, slots=True)
class SandboxDetail:
    """One sandbox, its containers (every attempt) and its pause process, if any."""

    sandbox: Sandbox
    containers: tuple[Container, ...]
    pause: ProcessInfo | None


@dataclass(frozen=True, slots=True)
class PodFindings:
    """The rules' findings for one pod."""

    view: PodView
    findings: tuple[Finding, ...]


@dataclass(frozen=True, slots=True)
class NodeFindings:
    """The findings of every pod that needed a look, most severe first."""

    pods_checked: int
    items: tuple[tuple[PodView, Finding], ...]


class Agent:
    """The node agent: built once from Settings, started and stopped by the app's lifespan."""

    def __init__(
        self,
        settings: Settings,
        *,
        node: NodeState | None = None,
        pods: PodCacheLike | None = None,
    ) -> None:
        self.settings = settings
        self.node = node if node is not None else NodeState(settings)
        self.pods = pods if pods is not None else pod_cache_from_settings(settings)
        # Every log read, whoever asks for it, stays under the configured roots.
        self.last_words = LastWords(
            allowed_roots=settings.log_roots, lines=settings.last_words_lines
        )
        self.tails = TailMemo(settings.log_roots, max_total_bytes=settings.log_memo_max_bytes)
        self._log_slots: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None
        self.metrics = Metrics(self.node, self.pods)
        self.heal = HealManager(
            settings,
            self.node,
            self.pods,
            AuditLog(settings.audit_log_path),
            on_finished=self.metrics.observe_run,
            on_refused=self.metrics.refused,
        )
        self._views = PodViewMemo()
        self._refresh: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.node.add_exit_listener(self._keep_last_words)
        self.pods.add_pod_listener(self._on_api_pod)

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        """Start the pod watch and the node's refresh loop."""
        self._loop = asyncio.get_running_loop()
        self.heal.bind_loop()
        self.pods.start()
        self._refresh = asyncio.create_task(self.node.run(), name="node-refresh")

    async def stop(self) -> None:
        """Abandon open heal runs (audited), then stop the refresh loop and the watch."""
        await self.heal.shutdown()
        if self._refresh is not None:
            self._refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresh
        await asyncio.to_thread(self.pods.stop)

    def _on_api_pod(self, pod: ApiPod) -> None:
        # From the watch thread: the API server may name a container or a
        # sandbox before the next relist would find it; the node looks now.
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closing
                loop.call_soon_threadsafe(self.node.expect_pod, pod)

    def _keep_last_words(self, container: Container) -> None:
        # Read the dead attempt's last lines before kubelet's GC removes the file.
        if container.log_path:
            # The path comes from the runtime itself, not from a request.
            key = AttemptKey(container.pod.uid, container.name, container.attempt)
            asyncio.get_running_loop().run_in_executor(
                None, self._remember, key, Path(container.log_path)
            )

    def _remember(self, key: AttemptKey, path: Path) -> None:
        try:
            self.last_words.remember(key, path)
        except AgentError as exc:
            log.info("could not keep the last log lines of %s: %s", key, exc.message)

    # -- runtime objects -----------------------------------------------------

    def container_detail(self, container_id: str) -> ContainerDetail:
        """A container by ID or unique prefix, with its process tree (blocking: /proc)."""
        container = self.node.find_container(container_id.lower())
        tree: ProcessNode | None = None
        if container.pid is not None:
            try:
                tree = host.process_tree(container.pid, self.settings.proc_root)
            except ProcessGone:
                # Exited since the last refresh; the next one will say so.
                self.node.request_refresh()
        return ContainerDetail(container, tree)

    def sandbox_detail(self, sandbox_id: str) -> SandboxDetail:
        """A sandbox by ID or unique prefix, with its containers and pause process."""
        sandbox = self.node.find_sandbox(sandbox_id)
        containers = sorted(
            self.node.snapshot.containers_in(sandbox.id), key=lambda c: (c.name, c.attempt)
        )
        pause: ProcessInfo | None = None
        if sandbox.pause_pid is not None:
            with contextlib.suppress(ProcessGone):
                pause = host.read_process(sandbox.pause_pid, self.settings.proc_root)
        return SandboxDetail(sandbox, tuple(containers), pause)

    def lookup_process(self, pid: int) -> ProcessOwner:
        """Any host PID -> its container, sandbox and pod; NotFound naming only the PID."""
        try:
            return self.node.lookup_process(pid)
        except ProcessGone:
            raise
        except NotFound:
            # A host process outside every container is none of a reader's
            # business: its name and cgroup stay out of the answer.
            raise NotFound(f"PID {pid} is not in a container", pid=pid) from None

    # -- pods ----------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The current runtime snapshot; Unavailable while the runtime cannot be trusted."""
        return self.node.live_snapshot()

    async def fresh_snapshot(self) -> Snapshot:
        """The snapshot once the refresh the API server's news asked for is in (bounded)."""
        await self.node.settle(self.settings.pod_view_wait_seconds)
        return self.node.live_snapshot()

    def pod_views(self, snap: Snapshot, now: datetime | None = None) -> list[PodView]:
        """Every pod of this node, joined; the last join is reused while its inputs hold."""
        return node_pod_views(self.settings, self.pods, snap, now, self._views)

    def find_pods(
        self,
        snap: Snapshot,
        *,
        namespace: str | None = None,
        status: str | None = None,
        problems: bool = False,
    ) -> list[PodView]:
        """The pods of this node in a namespace, with a kubectl STATUS, or needing attention."""
        now = datetime.now(UTC)
        return [
            v
            for v in self.pod_views(snap, now)
            if (namespace is None or v.namespace == namespace)
            and (status is None or v.status == status)
            and (not problems or needs_attention(v, now))
        ]

    def pod_view(
        self, snap: Snapshot, namespace: str, name: str, now: datetime | None = None
    ) -> PodView:
        """One pod of this node, or NotFound naming it."""
        return node_pod_view(self.settings, self.pods, snap, namespace, name, now)

    def pod_detail(self, snap: Snapshot, namespace: str, name: str) -> PodDetail:
        """One pod with its process trees, shared namespaces and events (blocking: /proc, API)."""
        view = self.pod_view(snap, namespace, name)
        processes = process_facts(view, self.settings.proc_root)
        events: tuple[ApiEvent, ...] = ()
        events_error: str | None = None
        if view.api_known:
            try:
                events = tuple(self.pods.events_for(view.namespace, view.uid))
            except ApiServerError as exc:
                events_error = exc.message
        return PodDetail(view, processes, events, events_error)

    def read_log(
        self,
        snap: Snapshot,
        namespace: str,
        name: str,
        container: str | None,
        *,
        previous: bool,
        lines: int,
    ) -> LogRead:
        """A container's last log lines (blocking: file reads)."""
        view = self.pod_view(snap, namespace, name)
        return read_log(
            view,
            container,
            previous=previous,
            lines=lines,
            log_roots=tuple(self.settings.log_roots),
            last_words=self.last_words,
            # Reading more than an answer may hold would only be thrown away.
            max_bytes=self.settings.log_response_max_bytes,
        )

    # -- diagnosis -----------------------------------------------------------

    def thresholds(self) -> Thresholds:
        """The rules' thresholds, with the ones the settings override."""
        s = self.settings
        return dataclasses.replace(
            DEFAULT_THRESHOLDS,
            init_waiting_warning=timedelta(seconds=s.diagnosis_init_waiting_seconds),
            creating_warning=timedelta(seconds=s.diagnosis_creating_seconds),
            not_ready_warning=timedelta(seconds=s.diagnosis_not_ready_seconds),
            port_grace=timedelta(seconds=s.diagnosis_port_grace_seconds),
        )

    @contextlib.asynccontextmanager
    async def log_slot(self) -> AsyncIterator[None]:
        """A turn at reading logs (``log_reads_concurrent`` at once); waits while all are taken.

        A logs answer or a diagnosis holds a few MiB while it is built (the
        bytes read, their text, the answer); bounding how many are built at
        once bounds the agent's memory whatever the requests, while waiting
        requests cost next to nothing. The semaphore is taken on the event
        loop, so waiting takes no worker thread.
        """
        loop = asyncio.get_running_loop()
        slots = self._log_slots
        if slots is None or slots[0] is not loop:
            # One per event loop: an asyncio semaphore belongs to the loop it ran on.
            slots = self._log_slots = (loop, asyncio.Semaphore(self.settings.log_reads_concurrent))
        async with slots[1]:
            yield

    async def _diagnose(self, views: list[PodView], now: datetime) -> list[tuple[Finding, ...]]:
        async with self.log_slot():
            return await self._diagnose_now(views, now)

    async def _diagnose_now(self, views: list[PodView], now: datetime) -> list[tuple[Finding, ...]]:
        inputs = await evidence.gather_many(
            views, self.pods, self.node.client, self.settings, self.last_words, now, self.tails
        )
        limits = self.thresholds()

        def rules() -> list[tuple[Finding, ...]]:
            return [tuple(diagnose(facts, thresholds=limits)) for facts in inputs]

        # The rules are pure but not free (patterns over messages the API
        # server accepted from anyone who may write events): in a worker
        # thread, the probes and every other request keep being served.
        return await asyncio.to_thread(rules)

    async def diagnose_pod(self, snap: Snapshot, namespace: str, name: str) -> PodFindings:
        """The findings for one pod, with the evidence gathered now."""
        now = datetime.now(UTC)
        view = self.pod_view(snap, namespace, name, now)
        (findings,) = await self._diagnose([view], now)
        return PodFindings(view, findings)

    async def diagnose_node(self, snap: Snapshot) -> NodeFindings:
        """The findings of every pod worth a look, most severe first."""
        now = datetime.now(UTC)
        views = self.pod_views(snap, now)
        # Healthy pods have nothing to find; gathering evidence for them is wasted I/O.
        candidates = [v for v in views if evidence.worth_diagnosing(v, now)]
        found = await self._diagnose(candidates, now)
        items = [(v, f) for v, fs in zip(candidates, found, strict=True) for f in fs]
        items.sort(key=lambda vf: (SEVERITY_RANK[vf[1].severity], vf[0].namespace, vf[0].name))
        return NodeFindings(len(views), tuple(items))
