"""Prometheus metrics: kill-and-watch phase durations, the node's state and the pod watch's counts.

A services module: imports prometheus_client, the node state, the heal runs, the pod
cache's type and the domain model.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from agent.domain.model import ContainerState
from agent.kube import PodCache, PodCacheLike, WatchStats
from agent.services.heal import HealRun, RunState
from agent.services.node import NodeState

# The pod watch's counts, each a counter: (name, help, WatchStats field).
_WATCH_COUNTERS = (
    (
        "podlens_pod_watch_lists",
        "Full lists of the node's pods (the first and every relist)",
        "lists",
    ),
    (
        "podlens_pod_watch_watches",
        "Watches started (each resumes from the last resourceVersion)",
        "watches",
    ),
    ("podlens_pod_watch_events", "ADDED, MODIFIED and DELETED events applied", "events"),
    ("podlens_pod_watch_bookmarks", "BOOKMARK events received", "bookmarks"),
    (
        "podlens_pod_watch_relists_after_gone",
        "Relists after the API server answered 410 Gone for the watch's resourceVersion",
        "relists_after_gone",
    ),
    (
        "podlens_pod_watch_streams_cut",
        "Watch streams broken off mid-way and resumed",
        "streams_cut",
    ),
    (
        "podlens_pod_watch_errors",
        "Failed lists or watches, each followed by a back-off and a relist",
        "errors",
    ),
)


def _watch_counters(stats: WatchStats) -> Iterator[CounterMetricFamily]:
    for name, text, attribute in _WATCH_COUNTERS:
        yield CounterMetricFamily(name, text, value=float(getattr(stats, attribute)))


# From tens of milliseconds (process gone) to minutes (a backoff wait).
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 40, 80, 160, 320, 640)


class _NodeCollector(Collector):
    def __init__(self, node: NodeState, pods: PodCacheLike) -> None:
        self._node = node
        self._pods = pods

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        snap = self._node.snapshot
        up = GaugeMetricFamily(
            "podlens_runtime_up", "1 when the container runtime is reachable and synced"
        )
        health = self._node.health
        up.add_metric([], 1.0 if health.connected and health.synced else 0.0)
        yield up
        api = GaugeMetricFamily(
            "podlens_api_up", "1 when the pod watch is synced", labels=["state"]
        )
        api.add_metric([self._pods.health.state], 1.0 if self._pods.health.state == "ok" else 0.0)
        yield api
        sandboxes = GaugeMetricFamily("podlens_sandboxes", "pod sandboxes the runtime holds")
        sandboxes.add_metric([], float(len(snap.sandboxes)))
        yield sandboxes
        containers = GaugeMetricFamily(
            "podlens_containers", "containers the runtime holds", labels=["state"]
        )
        for state in ContainerState:
            count = sum(1 for c in snap.containers.values() if c.state == state)
            containers.add_metric([state.value], float(count))
        yield containers
        relists = GaugeMetricFamily("podlens_runtime_relists", "relists since start")
        relists.add_metric([], float(self._node.refresh_count))
        yield relists
        # No watch in CRI-only mode: no counters rather than zeros that look like a stuck one.
        if isinstance(self._pods, PodCache):
            yield from _watch_counters(self._pods.stats)


class Metrics:
    """The agent's one registry: kill-and-watch histograms and counters, the node's gauges."""

    def __init__(self, node: NodeState, pods: PodCacheLike) -> None:
        self.registry = CollectorRegistry()
        self.phase_seconds = Histogram(
            "podlens_heal_phase_seconds",
            "Seconds from the signal to each recovery phase of a kill-and-watch run",
            ["target", "phase"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.recover_seconds = Histogram(
            "podlens_heal_time_to_recover_seconds",
            "Seconds from the signal until the target was healed",
            ["target"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.runs = Counter(
            "podlens_heal_runs", "Finished kill-and-watch runs", ["state"], registry=self.registry
        )
        self.refusals = Counter(
            "podlens_heal_refusals",
            "Refused kill-and-watch requests",
            ["rule"],
            registry=self.registry,
        )
        self.registry.register(_NodeCollector(node, pods))

    def observe_run(self, run: HealRun) -> None:
        """Count a finished run, and time each of its phases (and its recovery) from the signal."""
        kind = run.plan.target.kind
        self.runs.labels(run.state.value).inc()
        if not run.phases:
            return
        signal_at = run.phases[0].at
        for phase in run.phases[1:]:
            seconds = (phase.at - signal_at).total_seconds()
            self.phase_seconds.labels(kind, phase.name).observe(seconds)
        if run.state is RunState.HEALED and run.time_to_recover_seconds is not None:
            self.recover_seconds.labels(kind).observe(run.time_to_recover_seconds)

    def refused(self, rule: str) -> None:
        """Count a kill-and-watch request refused by ``rule``."""
        self.refusals.labels(rule).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition, the node's gauges read now."""
        return generate_latest(self.registry)
