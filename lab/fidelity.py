"""Fidelity of the stand-in lab: the same pods on the lab node and on the real node, compared.

A scenario is a manifest, how long to watch it and what to do to it (kill
its pause process, delete it gracefully). ``observe`` runs scenarios on one
node (``LabNode``, stand-in or ``--real``) and samples, over that time, every
observable a learner or the agent reads: the pod's phase and reason; each
condition with its status, reason and message; each container's state,
reason, message and exit code, its last state, restart count, readiness;
the events with their type, reason, message and whether repeats are folded
into one event's count; after the run, the CRI labels and annotation keys
of its containers, the attempts, the log file layout; after a pause kill,
what follows; during a graceful deletion, the grace period, the states while
Terminating and whether the pod goes. Values are normalized (UIDs, IDs, IPs,
node names, times) so the two nodes can be compared.

``compare`` takes both observations and names every observable whose values
differ, with both sets of values: over time, the set of values each took,
since the two nodes do not run at the same pace. ``KNOWN`` lists the
differences that are expected, each with its reason; ``unexplained`` is
what is left.

Owns the scenarios, the observables and their comparison. Imports
``lab.node`` (both kinds of node), ``lab.cri_pods`` (the runtime's view) and
``lab.errors``.
"""

from __future__ import annotations

import fnmatch
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from lab.cri_pods import LABEL_CONTAINER_NAME, LABEL_POD_UID, CriPodDriver
from lab.errors import LabError
from lab.node import LabNode

JSON = dict[str, Any]

SAMPLE_INTERVAL: Final = 0.5
# A value first seen this close to the end of a watch on one node only is not a
# difference: the nodes run at their own pace.
TAIL_GRACE: Final = 6.0
CRI_TIMEOUT: Final = 30.0


@dataclass(frozen=True, slots=True)
class Scenario:
    """One pod to run on both nodes: its manifest, how long to watch, what to do at ``act_at``."""

    name: str
    manifest: str
    watch_seconds: float
    action: str = ""  # "", "pause-kill" or "delete"
    act_at: float = 0.0


def _pod(name: str, spec: JSON) -> str:
    return yaml.safe_dump(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec},
        sort_keys=False,
    )


def _exercise(name: str) -> str:
    # Renamed, so a node that runs the exercises themselves can run these beside them.
    pod = yaml.safe_load((Path(__file__).parent / "exercises" / f"{name}.yaml").read_text())
    pod["metadata"]["name"] = f"fid-{name}"
    return yaml.safe_dump(pod, sort_keys=False)


SCENARIOS: Final[tuple[Scenario, ...]] = (
    Scenario("fid-crashloop-demo", _exercise("crashloop-demo"), 30.0),
    Scenario("fid-init-demo", _exercise("init-demo"), 15.0),
    Scenario("fid-init-fail-demo", _exercise("init-fail-demo"), 30.0),
    Scenario("fid-sidecar-pod", _exercise("sidecar-pod"), 12.0),
    Scenario(
        "fid-error-never",
        _pod(
            "fid-error-never",
            {
                "restartPolicy": "Never",
                "containers": [
                    {"name": "app", "image": "busybox", "command": ["sh", "-c", "echo bye; exit 3"]}
                ],
            },
        ),
        10.0,
    ),
    Scenario(
        "fid-completed",
        _pod(
            "fid-completed",
            {
                "restartPolicy": "OnFailure",
                "containers": [
                    {"name": "app", "image": "busybox", "command": ["sh", "-c", "echo done"]}
                ],
            },
        ),
        10.0,
    ),
    Scenario(
        "fid-readiness",
        _pod(
            "fid-readiness",
            {
                "containers": [
                    {
                        "name": "app",
                        "image": "busybox",
                        "command": ["sleep", "3600"],
                        "readinessProbe": {
                            "exec": {"command": ["cat", "/tmp/ready"]},
                            "periodSeconds": 2,
                        },
                    }
                ],
            },
        ),
        15.0,
    ),
    Scenario(
        "fid-missing-image",
        _pod(
            "fid-missing-image",
            {"containers": [{"name": "app", "image": "podlens.invalid/nope:1"}]},
        ),
        20.0,
    ),
    Scenario(
        "fid-pause-kill",
        _pod(
            "fid-pause-kill",
            {
                "initContainers": [
                    {"name": "init", "image": "busybox", "command": ["sh", "-c", "echo init"]}
                ],
                "containers": [{"name": "app", "image": "busybox", "command": ["sleep", "3600"]}],
            },
        ),
        30.0,
        action="pause-kill",
        act_at=6.0,
    ),
    Scenario(
        "fid-graceful",
        _pod(
            "fid-graceful",
            {
                "terminationGracePeriodSeconds": 5,
                "containers": [
                    {
                        "name": "polite",
                        "image": "busybox",
                        "command": [
                            "sh",
                            "-c",
                            "trap 'echo TERM; exit 0' TERM; while true; do sleep 0.2; done",
                        ],
                    },
                    {"name": "stubborn", "image": "busybox", "command": ["sleep", "3600"]},
                ],
            },
        ),
        20.0,
        action="delete",
        act_at=5.0,
    ),
)


# -- observing ------------------------------------------------------------------------


@dataclass(slots=True)
class Observation:
    """What one node showed of one scenario: each observable's values, in the order seen."""

    scenario: str
    values: dict[str, list[str]] = field(default_factory=dict)
    # Seconds into the watch at which each value was first seen (-1: read after it).
    first_seen: dict[str, dict[str, float]] = field(default_factory=dict)
    # How many samples showed each value.
    samples: dict[str, dict[str, int]] = field(default_factory=dict)
    window: float = 0.0

    def add(self, key: str, value: str, at: float = -1.0) -> None:
        """Record ``value`` for ``key`` unless it is the last one recorded."""
        seen = self.values.setdefault(key, [])
        if not seen or seen[-1] != value:
            seen.append(value)
        self.first_seen.setdefault(key, {}).setdefault(value, at)
        counted = self.samples.setdefault(key, {})
        counted[value] = counted.get(value, 0) + 1

    def passing(self, key: str, value: str) -> bool:
        """Whether ``value`` was read only once while sampling: a state one node wrote
        for less than a sample's interval, which the other may never have written."""
        return (
            self.first_seen.get(key, {}).get(value, -1.0) >= 0
            and self.samples.get(key, {}).get(value, 0) <= 1
        )

    def late(self, key: str, value: str) -> bool:
        """Whether ``value`` first came in the last seconds of the watch (the other node may
        simply not have got there yet)."""
        at = self.first_seen.get(key, {}).get(value, -1.0)
        return at >= 0 and at > self.window - TAIL_GRACE


_HEX_ID: Final = re.compile(r"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")
_UID: Final = re.compile(
    r"(?<![0-9a-f])[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?![0-9a-f])"
)
_IPV4: Final = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b")


class Normalizer:
    """Replaces what differs by nature between two nodes (IDs, IPs, names) by placeholders."""

    def __init__(self, node_name: str) -> None:
        self.node_name = node_name

    def __call__(self, text: Any) -> str:
        """``text`` with its node-specific parts replaced."""
        out = str(text)
        out = _HEX_ID.sub("<id>", out)
        out = _UID.sub("<uid>", out)
        out = _IPV4.sub("<ip>", out)
        if self.node_name:
            out = out.replace(self.node_name, "<node>")
        return out


def _state_text(state: Mapping[str, Any] | None, norm: Normalizer) -> str:
    if not state:
        return "none"
    for kind in ("waiting", "running", "terminated"):
        detail = state.get(kind)
        if isinstance(detail, dict):
            parts = [kind]
            if detail.get("reason"):
                parts.append(str(detail["reason"]))
            if kind == "terminated":
                parts.append(f"exit={detail.get('exitCode')}")
                if detail.get("signal"):
                    parts.append(f"signal={detail['signal']}")
            if detail.get("message"):
                parts.append(f"message={norm(str(detail['message']).strip())}")
            return " ".join(parts)
    return "none"


def pod_observables(pod: JSON, norm: Normalizer) -> dict[str, str]:
    """One reading of the API object, as observable name -> normalized value."""
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    out = {"phase": str(status.get("phase") or ""), "pod reason": str(status.get("reason") or "")}
    if status.get("message"):
        out["pod message"] = norm(status["message"])
    for cond in status.get("conditions") or []:
        value = f"{cond.get('status')}"
        if cond.get("reason"):
            value += f" reason={cond['reason']}"
        if cond.get("message"):
            value += f" message={norm(cond['message'])}"
        out[f"condition {cond.get('type')}"] = value
    for key, label in (("initContainerStatuses", "init"), ("containerStatuses", "container")):
        for cs in status.get(key) or []:
            prefix = f"{label} {cs.get('name')}"
            out[f"{prefix} state"] = _state_text(cs.get("state"), norm)
            out[f"{prefix} last state"] = _state_text(cs.get("lastState"), norm)
            out[f"{prefix} restarts"] = str(cs.get("restartCount", 0))
            out[f"{prefix} ready"] = str(bool(cs.get("ready"))).lower()
            if "started" in cs:
                out[f"{prefix} started"] = str(bool(cs.get("started"))).lower()
    if meta.get("deletionTimestamp"):
        out["deletion grace period"] = str(meta.get("deletionGracePeriodSeconds"))
    out["host network"] = str(bool(spec.get("hostNetwork"))).lower()
    return out


def event_observables(events: Iterable[JSON], norm: Normalizer) -> dict[str, str]:
    """Each event reason's type, source and messages, and whether repeats were folded."""
    out: dict[str, str] = {}
    for event in sorted(events, key=lambda e: str(e.get("reason"))):
        reason = str(event.get("reason"))
        path = ((event.get("involvedObject") or {}).get("fieldPath")) or ""
        key = f"event {reason}" + (f" {path}" if path else "")
        source = (event.get("source") or {}).get("component") or event.get("reportingComponent")
        message = norm(str(event.get("message") or "").strip())
        out[key + " message"] = f"{event.get('type')} from {source}: {message}"
        if int(event.get("count") or 1) > 1:
            out[key + " folded"] = "count > 1"
    return out


def cri_observables(driver: CriPodDriver, uid: str, norm: Normalizer) -> dict[str, str]:
    """Labels, annotation keys, attempts and log layout of the pod's containers and sandboxes."""
    out: dict[str, str] = {}
    sandboxes = driver.list_sandboxes({LABEL_POD_UID: uid})
    out["sandbox count"] = str(len(sandboxes))
    for sb in sandboxes[:1]:
        out["sandbox labels"] = ", ".join(sorted(f"{k}={norm(v)}" for k, v in sb.labels.items()))
        out["sandbox annotation keys"] = ", ".join(sorted(sb.annotations))
    for c in sorted(driver.list_containers({LABEL_POD_UID: uid}), key=lambda c: c.created_at):
        name = c.labels.get(LABEL_CONTAINER_NAME, c.metadata.name)
        prefix = f"cri {name}"
        out[f"{prefix} labels"] = ", ".join(sorted(f"{k}={norm(v)}" for k, v in c.labels.items()))
        out[f"{prefix} annotation keys"] = ", ".join(sorted(c.annotations))
        attempts = out.get(f"{prefix} attempts", "")
        out[f"{prefix} attempts"] = (attempts + " " if attempts else "") + str(c.metadata.attempt)
        log_path = driver.container_status(c.id).status.log_path
        # The structure, not which attempt was last: <ns>_<pod>_<uid>/<container>/<n>.log.
        parts = [
            *Path(log_path).parts[-3:-1],
            re.sub(r"^\d+\.log$", "<n>.log", Path(log_path).name),
        ]
        out[f"{prefix} log layout"] = norm("/".join(parts)).replace(
            str(c.labels.get("io.kubernetes.pod.namespace", "")) + "_", "<ns>_"
        )
    return out


def _kill_pause(driver: CriPodDriver, uid: str) -> None:
    ready = [s for s in driver.list_sandboxes({LABEL_POD_UID: uid}) if s.state == 0]
    for sb in ready:
        pid = driver.sandbox_pid(sb.id)
        if pid:
            os.kill(pid, signal.SIGKILL)


def observe(
    node: LabNode,
    scenarios: Sequence[Scenario],
    *,
    progress: Callable[[str], None] = lambda _m: None,
) -> dict[str, Observation]:
    """Run every scenario on ``node`` at once and observe each for its watch time."""
    state = node.require_state()
    norm = Normalizer(state.node_name)
    driver = CriPodDriver(
        state.cri_endpoint, Path(state.lab_dir) / "fidelity-logs", timeout=CRI_TIMEOUT
    )
    found = {s.name: Observation(s.name, window=s.watch_seconds) for s in scenarios}
    try:
        for s in scenarios:
            node.apply(s.manifest, source=f"{s.name}.yaml")
        progress(f"{len(scenarios)} pods applied on the {state.mode} node")
        start = time.monotonic()
        acted: set[str] = set()
        uids: dict[str, str] = {}
        deleters: list[threading.Thread] = []
        end = start + max(s.watch_seconds for s in scenarios)
        while time.monotonic() < end:
            now = time.monotonic() - start
            for s in scenarios:
                if now > s.watch_seconds:
                    continue
                pod = node.pod(s.name)
                obs = found[s.name]
                if pod is None:
                    obs.add("present", "gone" if s.name in uids else "not yet", now)
                    continue
                obs.add("present", "yes", now)
                uids[s.name] = str(pod["metadata"]["uid"])
                for key, value in pod_observables(pod, norm).items():
                    obs.add(key, value, now)
                for key, value in event_observables(node.events(s.name), norm).items():
                    obs.add(key, value, now)
                if s.action and now >= s.act_at and s.name not in acted:
                    acted.add(s.name)
                    if s.action == "pause-kill":
                        _kill_pause(driver, uids[s.name])
                    elif s.action == "delete":
                        thread = threading.Thread(
                            target=node.delete, args=(s.name,), name="fidelity-delete", daemon=True
                        )
                        thread.start()
                        deleters.append(thread)
            time.sleep(SAMPLE_INTERVAL)
        for s in scenarios:
            uid = uids.get(s.name)
            if uid:
                for key, value in cri_observables(driver, uid, norm).items():
                    found[s.name].add(key, value)
        for thread in deleters:
            thread.join(60)
    finally:
        for s in scenarios:
            try:
                if node.pod(s.name) is not None:
                    node.delete(s.name, grace_period=1)
            except LabError as exc:
                progress(f"could not delete {s.name}: {exc}")
        driver.close()
    return found


# -- comparing ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Difference:
    """One observable that took different values on the two nodes."""

    scenario: str
    observable: str
    lab: tuple[str, ...]
    real: tuple[str, ...]
    known: str = ""  # the reason, when the difference is expected

    def render(self) -> str:
        """Both values, for a person."""
        lab = " | ".join(self.lab) or "(never)"
        real = " | ".join(self.real) or "(never)"
        head = f"{self.scenario}: {self.observable}"
        tail = f"\n    known: {self.known}" if self.known else ""
        return f"{head}\n    lab:  {lab}\n    real: {real}{tail}"


# (scenario pattern, observable pattern) -> why the two nodes differ there. The
# README's fidelity section lists the same.
_NO_REGISTRY: Final = (
    "the stand-in has no registry: images come from its local store and kubelet's "
    '"already present on machine" is what it says for every pull policy, where the real '
    "node pulls busybox:latest (policy Always) from the lab's registry mirror"
)
_TIMING: Final = (
    "a container that exits within a second: the stand-in writes every change of state, "
    "kubelet's status manager may write only the end; the states before and after match"
)
_BACK_OFF_SHOWN: Final = (
    "kubelet shows a crashed container's back-off as waiting CrashLoopBackOff only when "
    "something syncs the pod during the back-off; on the real node the exit sometimes "
    "stays terminated until the restart. The stand-in shows the exit as terminated, then "
    "the back-off, every time"
)
KNOWN: Final[dict[tuple[str, str], str]] = {
    ("*", "event Pulling *"): _NO_REGISTRY,
    ("*", "event Pulled *"): _NO_REGISTRY,
    ("fid-missing-image", "*"): _NO_REGISTRY,
    ("*", "event MissingClusterDNS *"): (
        "the real node's kubelet has no cluster DNS configured and warns on every pod; the "
        "stand-in gives each pod a resolver on its own loopback with the cluster's search "
        "path (a Service name fails at once) and says so in a LabNote event where a pod "
        "looks one up"
    ),
    ("fid-init-demo", "event LabNote *"): (
        "the stand-in explains that the lab has no cluster DNS; the real node has none either "
        "and warns MissingClusterDNS instead"
    ),
    ("*", "cri * attempts"): (
        "kubelet's container garbage collection runs every minute and keeps one dead instance "
        "per container; the stand-in removes the older dead instance when it starts the next, "
        "so for a while they hold different dead attempts"
    ),
    ("*", "condition PodReadyToStartContainers"): (
        "when kubelet writes a pod's first status, before or after making its sandbox, "
        "varies from run to run; the stand-in always writes it first (no pod sandbox exists)"
    ),
    ("fid-crashloop-demo", "container app state"): _BACK_OFF_SHOWN,
    ("fid-init-fail-demo", "init migrate state"): _BACK_OFF_SHOWN,
    ("fid-graceful", "condition *Ready"): (
        "while a deleted pod's containers stop, the stand-in writes each one's end as it "
        "comes; kubelet's status manager may write them together"
    ),
    ("fid-pause-kill", "event *"): (
        "not yet matched by the stand-in: after a pause kill the real kubelet recorded "
        "Killing and Started more than once (folded counts), the stand-in once"
    ),
    ("fid-graceful", "sandbox *"): (
        "kubelet leaves a deleted pod's stopped sandbox to its garbage collection; the "
        "stand-in removes it with the pod"
    ),
    ("fid-completed", "container app *"): _TIMING,
    ("fid-completed", "condition *Ready"): _TIMING,
    ("fid-pause-kill", "init init *"): _TIMING,
    ("fid-error-never", "condition *"): _TIMING,
    ("fid-error-never", "container app *"): _TIMING,
    ("fid-error-never", "phase"): _TIMING,
}


def _known(scenario: str, observable: str) -> str:
    for (s_pat, o_pat), reason in KNOWN.items():
        if fnmatch.fnmatchcase(scenario, s_pat) and fnmatch.fnmatchcase(observable, o_pat):
            return reason
    return ""


def compare(lab: Mapping[str, Observation], real: Mapping[str, Observation]) -> list[Difference]:
    """Every observable whose set of values differs between the two nodes."""
    out = []
    for name in sorted(set(lab) | set(real)):
        a = lab.get(name, Observation(name)).values
        b = real.get(name, Observation(name)).values
        seen_lab = lab.get(name, Observation(name))
        seen_real = real.get(name, Observation(name))
        for key in sorted(set(a) | set(b)):
            va, vb = a.get(key, []), b.get(key, [])
            only_lab = {
                v
                for v in set(va) - set(vb)
                if not seen_lab.late(key, v) and not seen_lab.passing(key, v)
            }
            only_real = {
                v
                for v in set(vb) - set(va)
                if not seen_real.late(key, v) and not seen_real.passing(key, v)
            }
            if only_lab or only_real:
                out.append(Difference(name, key, tuple(va), tuple(vb), _known(name, key)))
    return out


def unexplained(differences: Iterable[Difference]) -> list[Difference]:
    """The differences ``KNOWN`` does not explain."""
    return [d for d in differences if not d.known]


def counts(
    lab: Mapping[str, Observation],
    real: Mapping[str, Observation],
    differences: Sequence[Difference],
) -> dict[str, tuple[int, int]]:
    """Per scenario: how many observables were compared and how many differ."""
    out = {}
    for name in set(lab) | set(real):
        keys = set(lab[name].values if name in lab else ()) | set(
            real[name].values if name in real else ()
        )
        out[name] = (len(keys), sum(1 for d in differences if d.scenario == name))
    return out
