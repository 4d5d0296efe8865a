"""The pod watch against the real API server: bookmarks, 410 Gone, a restarted kube-apiserver.

Two observers are checked. The agent of ``lab up --real`` through its HTTP
API: it must stay current across a quiet period and across a restart of
kube-apiserver (a pod created and one deleted while its watch was down). And
the agent's own watch code (``agent.kube.PodCache`` over ``KubeSource``) run
here against the same API server, where what it did can be counted: bookmarks
received, lists, relists after 410.

The 410 is the API server's own. Compacting etcd alone does not produce one
for a pod watch, which kube-apiserver serves from its watch cache; a restart
rebuilds that cache from the current revision, and a watch resumed from a
version before it, a compacted one, is answered 410 Gone. The in-process
watch is held at its version across the compaction and the restart (its
source waits at a gate before its next watch), so it meets exactly that.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.kube import Gone, KubeSource, PodCache, PodList, WatchEvent, api_client_from_settings
from agent.settings import Settings
from tests.real_cluster import (
    Reading,
    RealCluster,
    Row,
    disagreeing,
    lab_command,
    note,
    wait_for,
)

pytest_plugins = ("tests.real_cluster",)
pytestmark = [pytest.mark.containerd, pytest.mark.real, pytest.mark.usefixtures("module_timer")]

NODE = "lab-node"
SELECTOR = f"spec.nodeName={NODE}"
# Longer than the API server's bookmark interval for a watch (one minute).
QUIET_SECONDS = 65.0
# The in-process watch's server-side timeout: a bookmark comes before each end.
SHORT_WATCH = 8
# Pods no node runs (their node selector matches none), changed during the
# quiet period: the pods' resourceVersion moves on while this node's watch
# sees no event, which is what bookmarks are for. The API server sends a
# bookmark only with a version newer than the watcher's.
ELSEWHERE = "podlens-elsewhere"


def sleeper(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"podlens.io/test": "watch"}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "app", "image": "busybox", "command": ["sleep", "3600"]}],
        },
    }


class GatedSource:
    """The agent's KubeSource, with a gate the test closes to hold the watch at its version."""

    def __init__(self, inner: KubeSource) -> None:
        self.inner = inner
        self.open = threading.Event()
        self.open.set()
        self.parked = threading.Event()

    def list_pods(self, field_selector: str) -> PodList:
        return self.inner.list_pods(field_selector)

    def watch_pods(
        self, field_selector: str, resource_version: str, timeout_seconds: int
    ) -> Iterator[WatchEvent]:
        if not self.open.is_set():
            self.parked.set()
            self.open.wait()
        yield from self.inner.watch_pods(field_selector, resource_version, timeout_seconds)

    def list_events(self, namespace: str, field_selector: str) -> list[dict[str, Any]]:
        return self.inner.list_events(namespace, field_selector)

    def list_services(self, namespace: str) -> list[dict[str, Any]]:
        return self.inner.list_services(namespace)

    def close(self) -> None:
        self.open.set()
        self.inner.close()


def kube_source(cluster: RealCluster) -> KubeSource:
    settings = Settings(kubeconfig=Path(cluster.kubeconfig), node_name=NODE)
    return KubeSource(api_client_from_settings(settings), settings)


def names_in(cache: PodCache) -> set[str]:
    return {p.name for p in cache.pods.values() if p.namespace == "default"}


def api_state(cluster: RealCluster) -> str:
    return str(cluster.agent_json("/v1/node")["api"]["state"])


def compare(cluster: RealCluster) -> tuple[Reading, set[str]]:
    """The agent, kubectl, the agent: the reading and the pods whose rows do not fit."""
    reading = Reading(
        0.0, cluster.agent_node_rows(), cluster.node_rows(), cluster.agent_node_rows()
    )
    return reading, disagreeing(reading)


# --------------------------------------------------------------------------
# A quiet period
# --------------------------------------------------------------------------


def unschedulable(name: str) -> dict[str, Any]:
    pod = sleeper(name)
    pod["metadata"]["namespace"] = ELSEWHERE
    pod["spec"]["nodeSelector"] = {"podlens.io/node": "none"}
    return pod


@pytest.fixture
def elsewhere(real_cluster: RealCluster) -> Iterator[str]:
    """A namespace with a pod no node runs, for changes this node's watch must not see."""
    real_cluster.kubectl("create", "namespace", ELSEWHERE)
    try:
        wait_for(
            f"ServiceAccount default in {ELSEWHERE}",
            lambda: (
                real_cluster.kubectl(
                    "get", "sa", "default", "-n", ELSEWHERE, check=False
                ).returncode
                == 0
            ),
            60,
        )
        real_cluster.apply(unschedulable("unplaced"))
        yield "unplaced"
    finally:
        real_cluster.kubectl("delete", "namespace", ELSEWHERE, "--wait=false")


def test_quiet_period_bookmarks_keep_the_watch_current(
    real_cluster: RealCluster, elsewhere: str
) -> None:
    # Nothing of the other modules may change on the node meanwhile.
    wait_for(
        "no pods left in default",
        lambda: not real_cluster.kubectl_rows(),
        120,
        describe=real_cluster.kubectl_rows,
    )
    source = kube_source(real_cluster)
    cache = PodCache(source, NODE, watch_timeout_seconds=SHORT_WATCH)
    cache.start()
    try:
        assert cache.wait_synced(30)
        listed_at = int(cache.resource_version)
        states = set()
        t0 = time.monotonic()
        tick = 0
        while time.monotonic() - t0 < QUIET_SECONDS:
            states.add(api_state(real_cluster))
            tick += 1
            real_cluster.kubectl(
                "annotate",
                "pod",
                elsewhere,
                "-n",
                ELSEWHERE,
                f"podlens.io/tick={tick}",
                "--overwrite",
            )
            time.sleep(2.0)
        stats = cache.stats
        note(f"watch: quiet {QUIET_SECONDS:.0f}s, {tick} changes elsewhere: in-process {stats}")
        # The agent never lost the API server, and the watch here resumed
        # from its version each time the server ended a watch: no relist.
        assert states == {"ok"}
        assert stats.lists == 1
        assert stats.relists_after_gone == 0
        assert stats.watches >= QUIET_SECONDS // SHORT_WATCH - 1
        # A bookmark before the end of every watch but the one still open.
        assert stats.bookmarks >= stats.watches - 2, stats
        # Bookmarks alone carried the version forward: no pod changed.
        assert stats.events == 0
        assert int(cache.resource_version) > listed_at

        # Current after the quiet: a new pod shows on both sides at once.
        t1 = time.monotonic()
        real_cluster.apply(sleeper("after-quiet"))
        wait_for(
            "the agent lists after-quiet", lambda: "after-quiet" in real_cluster.agent_rows(), 5
        )
        agent_took = time.monotonic() - t1
        wait_for(
            "the in-process watch has after-quiet", lambda: "after-quiet" in names_in(cache), 5
        )
        note(f"watch: a pod made after the quiet period showed in the agent in {agent_took:.2f}s")
    finally:
        cache.stop()
        real_cluster.delete_pods(["after-quiet"])


# --------------------------------------------------------------------------
# Compaction and a restart of kube-apiserver
# --------------------------------------------------------------------------


@dataclass(slots=True)
class Restart:
    """What happened around the restart, for the tests to check."""

    held_version: int
    compacted_at: int
    etcd_old_read: dict[str, Any]
    gone: str
    restart_seconds: float
    cache: PodCache
    # When kube-apiserver answered again and the pods had changed.
    changed_at: float
    # The DaemonSet agent's pod watch counts (its /metrics) before the restart.
    counts_before: dict[str, float]
    # The lab's kubectl port-forward to the agent, before and after.
    forward_pids: tuple[int, int]


def watch_counts(cluster: RealCluster) -> dict[str, float]:
    """The agent's pod watch counters from its /metrics, by name without ``_total``."""
    response = cluster.agent("GET", "/metrics")
    assert response.status_code == 200, response.text
    return {
        sample.name.removeprefix("podlens_pod_watch_").removesuffix("_total"): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name.startswith("podlens_pod_watch_") and sample.name.endswith("_total")
    }


@pytest.fixture(scope="module")
def restart(real_cluster: RealCluster) -> Iterator[Restart]:
    real_cluster.apply(sleeper("doomed"))
    running = Row("Running", "1/1", "0")
    wait_for(
        "doomed Running on both sides",
        lambda: (
            real_cluster.kubectl_rows().get("doomed")
            == running
            == real_cluster.agent_rows().get("doomed")
        ),
        60,
    )
    source = GatedSource(kube_source(real_cluster))
    cache = PodCache(source, NODE, watch_timeout_seconds=3)
    cache.start()
    try:
        assert cache.wait_synced(30)
        assert "doomed" in names_in(cache)
        source.open.clear()
        assert source.parked.wait(30), "the in-process watch never came back for its next watch"
        held = int(cache.resource_version)

        # A write after the held version, so that compacting at the current
        # revision removes it (a compaction keeps the revision it is made at).
        real_cluster.kubectl(
            "annotate", "namespace", "default", f"podlens.io/held={held}", "--overwrite"
        )
        compacted = real_cluster.etcd_compact()
        old_read = real_cluster.etcd_read_at(held)

        counts_before = watch_counts(real_cluster)
        forward_before = real_cluster.state().components["agent"].pid
        # The lab's own restart, as a person runs it: same command line, and its
        # port-forward opened again.
        done = lab_command("restart", "apiserver", lab_dir=real_cluster.lab_dir, timeout=180)
        assert done.returncode == 0, done.stderr
        said = re.search(r"^apiserver restarted: ready again in ([0-9.]+)s$", done.stdout, re.M)
        assert said is not None, done.stdout
        restarted = float(said.group(1))
        forward_after = real_cluster.state().components["agent"].pid

        # Changes made while the agent's watch is down or backing off.
        real_cluster.apply(sleeper("born"))
        real_cluster.kubectl("delete", "pod", "doomed", "--grace-period=1", "--wait=false")
        changed_at = time.monotonic()

        # The version the in-process watch holds is before the new watch cache.
        gone: list[str] = []

        def answered_gone() -> bool:
            try:
                for _ in kube_source(real_cluster).watch_pods(SELECTOR, str(held), 5):
                    return False
            except Gone as exc:
                gone.append(str(exc))
                return True
            except Exception:
                return False  # the watch cache still starting (429)
            return False

        wait_for("a 410 for the held version", answered_gone, 60, interval=0.5)
        source.open.set()
        yield Restart(
            held_version=held,
            compacted_at=compacted,
            etcd_old_read=old_read,
            gone=gone[0],
            restart_seconds=restarted,
            cache=cache,
            changed_at=changed_at,
            counts_before=counts_before,
            forward_pids=(forward_before, forward_after),
        )
    finally:
        source.open.set()
        cache.stop()
        real_cluster.delete_pods(["doomed", "born"])


def test_compaction_removed_the_held_version_from_etcd(restart: Restart) -> None:
    assert restart.held_version < restart.compacted_at
    assert "compacted" in str(restart.etcd_old_read.get("message", "")), restart.etcd_old_read


def test_the_api_server_answers_410_for_a_version_before_its_restart(restart: Restart) -> None:
    note(
        f"watch: kube-apiserver restarted, ready again in {restart.restart_seconds:.1f}s; "
        f"a watch from {restart.held_version}: {restart.gone}"
    )
    assert "too old resource version" in restart.gone


def test_agent_watch_code_relists_after_410(real_cluster: RealCluster, restart: Restart) -> None:
    cache = restart.cache

    def current() -> bool:
        held = names_in(cache)
        return held == set(real_cluster.kubectl_rows()) and "born" in held and "doomed" not in held

    wait_for(
        "the in-process watch current after the restart",
        current,
        30,
        describe=lambda: (names_in(cache), real_cluster.kubectl_rows()),
    )
    stats = cache.stats
    note(f"watch: in-process after the restart: {stats}")
    assert stats.relists_after_gone == 1
    assert stats.lists == 2
    assert "doomed" not in names_in(cache)


def test_agent_stays_right_across_an_apiserver_restart(
    real_cluster: RealCluster, restart: Restart
) -> None:
    before, after = restart.forward_pids
    assert before != after, "the port-forward to the agent was not opened again"
    assert real_cluster.node.status()["components"]["agent"]["running"]

    def current() -> bool:
        rows = real_cluster.agent_rows()
        return (
            "born" in rows
            and "doomed" not in rows
            and rows["born"].status == "Running"
            and api_state(real_cluster) == "ok"
        )

    # The agent reconnects with a capped back-off (30 s at most).
    wait_for(
        "the agent current after the restart",
        current,
        45,
        interval=0.25,
        describe=lambda: (real_cluster.agent_rows(), real_cluster.agent_json("/v1/node")["api"]),
    )
    took = time.monotonic() - restart.changed_at
    note(
        f"watch: the agent showed the pods changed after the restart within {took:.1f}s "
        "(through its port-forward, opened again)"
    )
    # Read again briefly only if a reading straddled a change of the pods.
    for _ in range(5):
        reading, differ = compare(real_cluster)
        if not differ:
            break
        time.sleep(0.5)
    assert not differ, f"kubectl vs agent: {reading}"


def test_agent_metrics_count_the_watch_across_the_restart(
    real_cluster: RealCluster, restart: Restart
) -> None:
    # After the agent is current again (the test above, or this wait).
    wait_for(
        "the agent lists born",
        lambda: "born" in real_cluster.agent_rows() and api_state(real_cluster) == "ok",
        45,
        interval=0.25,
    )
    before, after = restart.counts_before, watch_counts(real_cluster)
    note(f"watch: the agent's counts before the restart {before}, after {after}")
    assert (
        set(before)
        == set(after)
        == {
            "lists",
            "watches",
            "events",
            "bookmarks",
            "relists_after_gone",
            "streams_cut",
            "errors",
        }
    )
    assert all(after[k] >= before[k] for k in before), (before, after)
    # Its watch broke with the API server: it backed off or was told 410, and
    # relisted either way (a relist may already hold born and not doomed, so
    # events need not grow), then watched again.
    assert after["errors"] + after["relists_after_gone"] > (
        before["errors"] + before["relists_after_gone"]
    ), (before, after)
    assert after["lists"] > before["lists"], (before, after)
    assert after["watches"] > before["watches"], (before, after)
