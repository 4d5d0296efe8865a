"""The agent's STATUS, READY and RESTARTS against the real API server's, while pods change.

Every exercise in ``lab/exercises/`` and a pod for each state a troubleshooter
meets (``tests/fixtures/real/states.yaml``, ``terminating.yaml``) run on the
real kubelet. For about a minute and a half the test reads both sides over and
over: GET /v1/pods from the agent, ``kubectl get pods -o wide`` (the columns
kube-apiserver prints itself, as a Table), then the agent again. A pod agrees
when kubectl's row equals one of the two agent readings taken around it (the
"ago" of RESTARTS may have ticked in between, so it may also lie between
them). A pod that agrees with neither is read again at once, a few times over
a few seconds, and must then agree, either because the agent's two readings
straddled a change or because the agent caught up with the very state kubectl
showed: a difference is allowed only across a change, never for good.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import yaml

from lab.exercises import DIRECTORY, EXERCISES
from tests.real_cluster import (
    Reading,
    RealCluster,
    Row,
    changed,
    disagreeing,
    load_manifests,
    note,
    settles,
)

pytest_plugins = ("tests.real_cluster",)
pytestmark = [pytest.mark.containerd, pytest.mark.real, pytest.mark.usefixtures("module_timer")]

WATCH_SECONDS = 90.0
# Longer only while a pod has not yet gone through what it is there to show.
MAX_WATCH_SECONDS = 180.0
# Seconds into the watch when the pods of terminating.yaml are deleted.
DELETE_AFTER = 30.0
ROUND_INTERVAL = 1.5
# A disagreement must be gone within this many fresh readings, taken at once
# (the first right away: the agent's watch is milliseconds behind).
RETRIES = 5
RETRY_INTERVAL = 0.5


@dataclass(slots=True)
class Watch:
    """What the module's watch saw."""

    readings: list[Reading] = field(default_factory=list)
    # pod -> the readings in which it first disagreed and the retries that followed
    unresolved: dict[str, list[Reading]] = field(default_factory=dict)
    resolved_by_retry: list[tuple[str, Reading, Reading]] = field(default_factory=list)
    straddled: list[tuple[str, Reading]] = field(default_factory=list)
    deleted_at: float | None = None

    def seen(self, pod: str, namespace: str = "default") -> list[Row]:
        """Every row kubectl printed for ``pod``, in order."""
        key = f"{namespace}/{pod}"
        return [r.kubectl[key] for r in self.readings if key in r.kubectl]


def read(cluster: RealCluster, t0: float) -> Reading:
    before = cluster.agent_node_rows()
    kubectl = cluster.node_rows()
    after = cluster.agent_node_rows()
    return Reading(time.monotonic() - t0, before, kubectl, after)


def pod_manifests() -> list[dict]:
    exercises = [yaml.safe_load(p.read_text()) for p in sorted(DIRECTORY.glob("*.yaml"))]
    return [*exercises, *load_manifests("states.yaml"), *load_manifests("terminating.yaml")]


# Between two restarts the real kubelet mostly leaves the exit in the status
# (Error), and shows CrashLoopBackOff only when it syncs the pod during the wait.
LOOPING = {
    "CrashLoopBackOff": {"CrashLoopBackOff", "Error"},
    "Init:CrashLoopBackOff": {"Init:CrashLoopBackOff", "Init:Error"},
}
# The STATUS values each pod must have shown while it was compared.
STATES = {
    "crash-multi": {"CrashLoopBackOff"},
    "oom": {"OOMKilled"},
    "nopull": {"ErrImagePull", "ImagePullBackOff"},
    "cfgkey": {"CreateContainerConfigError"},
    "done": {"Completed"},
    "failed": {"Error"},
    "init-demo": {"Init:0/2"},
    "init-fail-demo": {"Init:Error"},
    "sidecar-starting": {"Init:0/1", "Running"},
    "held": {"Running", "Terminating", "Error"},
    "slow-stop": {"Running", "Terminating"},
}
# kubelet's back-off doubles from 10 s: restarts 1, 2 and 3 come within about
# 70 s of the first start, each compared while the pod waits out its step.
LOOPERS = ("crashloop-demo", "oom", "init-fail-demo")


def uncovered(watch: Watch) -> dict[str, str]:
    """What the pods have not gone through yet, by check; empty once all was compared."""
    out: dict[str, str] = {}
    for exercise in EXERCISES:
        rows = watch.seen(exercise.pod)
        expected = LOOPING.get(exercise.status, {exercise.status})
        if not any(r.status in expected and r.ready == exercise.ready for r in rows):
            out[f"exercise {exercise.name}"] = f"never {exercise.status} {exercise.ready}: {rows}"
    for pod, statuses in STATES.items():
        missing = statuses - {r.status for r in watch.seen(pod)}
        if missing:
            out[pod] = f"never {sorted(missing)}; saw {watch.seen(pod)}"
    for pod in LOOPERS:
        if len({r.restart_count for r in watch.seen(pod) if r.restart_count > 0}) < 3:
            out[f"{pod} back-off"] = f"fewer than 3 restarts compared: {watch.seen(pod)}"
    for pod, ready in (("late-ready", {"0/1", "1/1"}), ("native-sidecar", {"2/2"})):
        if not ready <= {r.ready for r in watch.seen(pod)}:
            out[f"{pod} ready"] = f"never READY {sorted(ready)}: {watch.seen(pod)}"
    return out


@pytest.fixture(scope="module")
def watch(real_cluster: RealCluster) -> Iterator[Watch]:
    manifests = pod_manifests()
    pods = {m["metadata"]["name"] for m in manifests if m["kind"] == "Pod"}
    terminating = [m["metadata"]["name"] for m in load_manifests("terminating.yaml")]
    real_cluster.apply(manifests)
    seen = Watch()
    t0 = time.monotonic()
    try:
        while (elapsed := time.monotonic() - t0) < WATCH_SECONDS or (
            elapsed < MAX_WATCH_SECONDS and uncovered(seen)
        ):
            if seen.deleted_at is None and time.monotonic() - t0 >= DELETE_AFTER:
                real_cluster.kubectl("delete", "pod", *terminating, "--wait=false")
                seen.deleted_at = time.monotonic() - t0
            reading = read(real_cluster, t0)
            seen.readings.append(reading)
            seen.straddled += [
                (pod, reading)
                for pod in set(reading.before) | set(reading.after)
                if changed(reading.before.get(pod), reading.after.get(pod))
            ]
            for pod in disagreeing(reading):
                retries: list[Reading] = []
                for attempt in range(RETRIES):
                    time.sleep(RETRY_INTERVAL if attempt else 0.1)
                    retry = read(real_cluster, t0)
                    retries.append(retry)
                    if settles(reading, retry, pod):
                        seen.resolved_by_retry.append((pod, reading, retry))
                        break
                else:
                    seen.unresolved[pod] = [reading, *retries]
            time.sleep(ROUND_INTERVAL)
        compared = {p for r in seen.readings for p in (*r.kubectl, *r.before, *r.after)}
        note(
            f"status watch: {len(seen.readings)} readings of {len(compared)} pods over "
            f"{seen.readings[-1].at:.0f}s; {len(seen.straddled)} straddled a change, "
            f"{len(seen.resolved_by_retry)} agreed on a retry, {len(seen.unresolved)} never"
        )
        for pod, first, retry in seen.resolved_by_retry:
            note(
                f"  retried {pod} at {first.at:.1f}s: kubectl {first.kubectl.get(pod)}, agent "
                f"{first.before.get(pod)} / {first.after.get(pod)}; agreed at {retry.at:.1f}s"
            )
        yield seen
    finally:
        # slow-stop would wait out its hour: kubelet keeps the grace period it
        # gave the runtime even when the deletion is repeated with a shorter one.
        if real_cluster.pod("slow-stop") is not None:
            real_cluster.kill_on_node("slow-stop")
        real_cluster.delete_pods(sorted(pods))


def describe(pod: str, readings: list[Reading]) -> str:
    return "\n".join(
        f"  at {r.at:5.1f}s agent {r.before.get(pod)} | kubectl {r.kubectl.get(pod)} | "
        f"agent {r.after.get(pod)}"
        for r in readings
    )


def test_agent_columns_equal_kubectl_at_every_reading(watch: Watch) -> None:
    assert len(watch.readings) >= 30
    assert not watch.unresolved, "the agent and kubectl disagreed for good:\n" + "\n".join(
        f"{pod}:\n{describe(pod, readings)}" for pod, readings in watch.unresolved.items()
    )


def test_every_exercise_reaches_the_status_it_documents(watch: Watch) -> None:
    files = {p.stem for p in DIRECTORY.glob("*.yaml")}
    assert files == {e.name for e in EXERCISES}
    missing = {k: v for k, v in uncovered(watch).items() if k.startswith("exercise ")}
    assert not missing, missing


@pytest.mark.parametrize("pod", sorted(STATES))
def test_each_state_was_compared(watch: Watch, pod: str) -> None:
    # The comparison means something only where the pod went through the state.
    assert pod not in uncovered(watch), uncovered(watch)[pod]


def test_readiness_and_sidecars_count_in_ready(watch: Watch) -> None:
    assert {r.ready for r in watch.seen("unready")} == {"0/1"}
    assert "1/3" in {r.ready for r in watch.seen("crash-multi")}
    missing = {k: v for k, v in uncovered(watch).items() if k.endswith(" ready")}
    assert not missing, missing


def test_crash_loop_compared_at_several_back_off_steps(watch: Watch) -> None:
    missing = {k: v for k, v in uncovered(watch).items() if k.endswith(" back-off")}
    assert not missing, missing
    for pod in LOOPERS:
        rows = [r for r in watch.seen(pod) if r.restart_count > 0]
        assert all(r.restart_ago is not None for r in rows), (pod, rows)


def test_deletion_was_compared_while_it_happened(watch: Watch) -> None:
    assert watch.deleted_at is not None
    after = [r for r in watch.readings if r.at > watch.deleted_at]
    held = [r.kubectl["default/held"] for r in after if "default/held" in r.kubectl]
    # Terminating through the grace period, then the phase kubelet set, with
    # the finalizer keeping the object.
    assert held[0].status == "Terminating", held
    assert held[-1].status == "Error", held
