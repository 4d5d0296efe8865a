"""Prometheus metrics: kill-and-watch phase durations, and the node's state at scrape time.

A services module: imports prometheus_client, the node state, the heal runs, the pod
cache's type and the domain model.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from agent.domain.model import ContainerState
from agent.kube import PodCacheLike
from agent.services.heal import HealRun, RunState
from agent.services.node import NodeState

# From tens of milliseconds (process gone) to minutes (a backoff wait).
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 40, 80, 160, 320, 640)


class _NodeCollector(Collector):
    def __init__(self, node: NodeState, pods: PodCacheLike) -> None:
        self._node = node
        self._pods = pods

    def collect(self) -> Iterator[GaugeMetricFamily]:
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
