"""A pod diagnosed from its status alone gets every finding its whole object gets.

Pods are generated the way kubelet reports them: scheduled or not, blocked
on an init container (waiting on something, crash-looping, failed, not yet
created) with or without a native sidecar before it, running with app
containers in every state the rules read, or finished. Each is diagnosed
whole, then from ``{"status": ...}`` and from the status fields alone;
STATUS and the findings (rule, container, severity) must be the same, and
READY and RESTARTS too whenever every container reports a status. From a
bare ``containerStatuses`` list, which has no phase and no conditions, the
container-level findings must still all be there.

A second property: no document at all makes the command fail other than
with one ``InvalidInput`` line.
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.cli.diagnose import diagnose_documents
from agent.errors import InvalidInput

NOW = datetime(2025, 3, 4, 12, 0, 0, tzinfo=UTC)
Doc = dict[str, Any]
FIXTURES = Path(__file__).parent / "fixtures"
# Findings read from a container's own status, which a bare containerStatuses list keeps.
CONTAINER_RULES = frozenset(
    {"crashloop", "oom-killed", "image-pull", "config-error", "start-error", "not-ready"}
)


def stamp(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def terminated(code: int, reason: str, finished_ago: float, ran: float = 5) -> Doc:
    return {
        "terminated": {
            "exitCode": code,
            "reason": reason,
            "startedAt": stamp(finished_ago + ran),
            "finishedAt": stamp(finished_ago),
        }
    }


def status(
    name: str,
    state: Doc,
    *,
    last: Doc | None = None,
    ready: bool = False,
    restarts: int = 0,
    started: bool | None = None,
) -> Doc:
    running = "running" in state
    return {
        "name": name,
        "image": f"registry.example.com/shop/{name}:1",
        "ready": ready,
        "started": running if started is None else started,
        "restartCount": restarts,
        "state": state,
        "lastState": last or {},
    }


# --------------------------------------------------------------------------
# Container states, as kubelet reports them
# --------------------------------------------------------------------------

EXITS = st.sampled_from(
    [(1, "Error"), (2, "Error"), (137, "OOMKilled"), (139, "Error"), (143, "Error")]
)


@st.composite
def app_state(draw: st.DrawFn, name: str) -> Doc:
    """One app container of a running pod under restartPolicy Always."""
    kind = draw(
        st.sampled_from(
            [
                "ready",
                "unready",
                "crashloop",
                "recent-exit",
                "old-oom",
                "pull",
                "config",
                "start",
                "start-exit",
                "creating",
                "exited",
                "unknown",
            ]
        )
    )
    restarts = draw(st.integers(1, 500))
    code, reason = draw(EXITS)
    if kind == "ready":
        return status(name, {"running": {"startedAt": stamp(3600)}}, ready=True)
    if kind == "unready":
        return status(name, {"running": {"startedAt": stamp(draw(st.integers(90, 3000)))}})
    if kind == "crashloop":
        return status(
            name,
            {"waiting": {"reason": "CrashLoopBackOff"}},
            last=terminated(code, reason, draw(st.integers(1, 290))),
            restarts=restarts,
        )
    if kind == "recent-exit":
        return status(
            name,
            {"running": {"startedAt": stamp(20)}},
            last=terminated(code, reason, 25),
            restarts=restarts,
            ready=draw(st.booleans()),
        )
    if kind == "old-oom":
        return status(
            name,
            {"running": {"startedAt": stamp(7000)}},
            last=terminated(137, "OOMKilled", 7200),
            restarts=restarts,
            ready=True,
        )
    if kind == "pull":
        reason = draw(st.sampled_from(["ImagePullBackOff", "ErrImagePull", "InvalidImageName"]))
        return status(name, {"waiting": {"reason": reason}})
    if kind == "config":
        message = draw(
            st.sampled_from(['configmap "app-config" not found', 'secret "db" not found', None])
        )
        waiting: Doc = {"reason": "CreateContainerConfigError"}
        if message:
            waiting["message"] = message
        return status(name, {"waiting": waiting})
    if kind == "start":
        reason = draw(st.sampled_from(["RunContainerError", "CreateContainerError"]))
        return status(name, {"waiting": {"reason": reason}}, restarts=restarts)
    if kind == "start-exit":
        return status(
            name,
            {"waiting": {"reason": "CrashLoopBackOff"}},
            last=terminated(128, "StartError", 30, ran=0),
            restarts=restarts,
        )
    if kind == "creating":
        return status(name, {"waiting": {"reason": "ContainerCreating"}})
    if kind == "exited":
        return status(name, terminated(code, reason, 2), restarts=restarts - 1)
    return status(
        name,
        terminated(137, "ContainerStatusUnknown", 60),
        restarts=restarts - 1,
    )


# --------------------------------------------------------------------------
# Whole pods
# --------------------------------------------------------------------------


def container(name: str, *, sidecar: bool = False) -> Doc:
    c: Doc = {
        "name": name,
        "image": f"registry.example.com/shop/{name}:1",
        "command": ["sh", "-c", f"until nslookup {name}-svc; do sleep 2; done"],
        "resources": {"limits": {"memory": "128Mi"}},
    }
    if sidecar:
        c["restartPolicy"] = "Always"
    return c


def conditions(scheduled: bool, initialized: bool, ready: bool) -> list[Doc]:
    if not scheduled:
        return [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient cpu.",
                "lastTransitionTime": stamp(900),
            }
        ]
    return [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp(3700)},
        {
            "type": "Initialized",
            "status": "True" if initialized else "False",
            "lastTransitionTime": stamp(3650),
        },
        {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": stamp(60)},
    ]


@st.composite
def whole_pods(draw: st.DrawFn) -> Doc:
    """A Pod as ``kubectl get pod -o json`` prints it, in one of the states kubelet reports."""
    n_app = draw(st.integers(1, 3))
    n_init = draw(st.integers(0, 2))
    sidecar = n_init > 0 and draw(st.booleans())
    stage = draw(st.sampled_from(["unscheduled", "initializing", "running", "finished"]))
    if stage == "initializing" and n_init == 0:
        stage = "running"
    apps = [f"app-{c}" for c in "abc"[:n_app]]
    inits = [f"init-{i}" for i in range(n_init)]
    spec: Doc = {
        "containers": [container(n) for n in apps],
        "restartPolicy": "Never" if stage == "finished" else "Always",
    }
    if inits:
        spec["initContainers"] = [
            container(n, sidecar=sidecar and i == 0) for i, n in enumerate(inits)
        ]
    st_doc: Doc = {"phase": "Pending", "startTime": stamp(3700)}
    meta = {
        "name": "web-1",
        "namespace": "shop",
        "uid": "9f1c3c7e-2b7a-4d64-8f0e-1a2b3c4d5e6f",
        "creationTimestamp": stamp(3700),
    }
    doc: Doc = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}
    if stage == "unscheduled":
        st_doc["conditions"] = conditions(False, False, False)
        del st_doc["startTime"]
        doc["status"] = st_doc
        return doc
    spec["nodeName"] = "worker-1"
    st_doc["hostIP"] = "10.0.0.11"
    side = (
        [status(inits[0], {"running": {"startedAt": stamp(3600)}}, ready=True, started=True)]
        if sidecar
        else []
    )
    done = [status(n, terminated(0, "Completed", 3600)) for n in inits[len(side) :]]
    if stage == "initializing":
        first = len(side)
        blocked = draw(st.integers(first, n_init - 1)) if n_init > first else None
        if blocked is None:
            stage = "running"
        else:
            how = draw(st.sampled_from(["waiting", "crashloop", "retry", "failed", "creating"]))
            name = inits[blocked]
            if how == "waiting":
                since = stamp(draw(st.integers(90, 3000)))
                blocker = status(name, {"running": {"startedAt": since}})
            elif how == "crashloop":
                blocker = status(
                    name,
                    {"waiting": {"reason": "CrashLoopBackOff"}},
                    last=terminated(1, "Error", 40),
                    restarts=draw(st.integers(1, 40)),
                )
            elif how == "retry":
                blocker = status(
                    name,
                    {"running": {"startedAt": stamp(5)}},
                    last=terminated(1, "Error", 8),
                    restarts=draw(st.integers(1, 40)),
                )
            elif how == "failed":
                blocker = status(name, terminated(1, "Error", 30), restarts=draw(st.integers(0, 3)))
            else:
                blocker = status(name, {"waiting": {"reason": "PodInitializing"}})
            rest = [
                status(n, {"waiting": {"reason": "PodInitializing"}}) for n in inits[blocked + 1 :]
            ]
            st_doc["initContainerStatuses"] = [*side, *done[: blocked - first], blocker, *rest]
            st_doc["containerStatuses"] = [
                status(n, {"waiting": {"reason": "PodInitializing"}}) for n in apps
            ]
            st_doc["conditions"] = conditions(True, False, False)
            doc["status"] = st_doc
            return doc
    if inits:
        st_doc["initContainerStatuses"] = [*side, *done]
    if stage == "finished":
        evicted = draw(st.booleans())
        codes = draw(st.lists(EXITS, min_size=n_app, max_size=n_app))
        st_doc["phase"] = "Failed"
        st_doc["containerStatuses"] = [
            status(n, terminated(code, reason, 300))
            for n, (code, reason) in zip(apps, codes, strict=True)
        ]
        if evicted:
            st_doc["reason"] = "Evicted"
            st_doc["message"] = "The node was low on resource: memory. "
        st_doc["conditions"] = conditions(True, True, False)
    else:
        st_doc["phase"] = "Running"
        st_doc["containerStatuses"] = [draw(app_state(n)) for n in apps]
        all_ready = all(s["ready"] for s in st_doc["containerStatuses"])
        st_doc["conditions"] = conditions(True, True, all_ready)
    doc["status"] = st_doc
    return doc


def key(report: dict[str, Any]) -> list[tuple[str, str | None, str]]:
    return sorted((f["rule"], f["container"], f["severity"]) for f in report["findings"])


def every_container_reports(doc: Doc) -> bool:
    names = {c["name"] for c in doc["spec"]["containers"]}
    names |= {c["name"] for c in doc["spec"].get("initContainers", [])}
    reported = {
        s["name"]
        for group in ("initContainerStatuses", "containerStatuses")
        for s in doc["status"].get(group, [])
    }
    return names <= reported


def assert_same_diagnosis(doc: Doc) -> None:
    full = diagnose_documents(json.dumps(doc), None, NOW)
    assert "input" not in full
    for fragment in ({"status": doc["status"]}, doc["status"]):
        part = diagnose_documents(json.dumps(fragment), None, NOW)
        assert part["partial"] is True
        assert part["status"] == full["status"], part["input"]
        assert key(part) == key(full), part["input"]
        if every_container_reports(doc):
            assert (part["ready"], part["restarts"]) == (full["ready"], full["restarts"])


@settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(whole_pods())
def test_the_status_alone_gets_every_finding_of_the_whole_pod(doc: Doc) -> None:
    assert_same_diagnosis(doc)


@settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(whole_pods())
def test_a_bare_container_statuses_list_keeps_the_container_findings(doc: Doc) -> None:
    pod_status = doc["status"]
    statuses = pod_status.get("containerStatuses")
    if not statuses or pod_status["phase"] != "Running" or "initContainerStatuses" in pod_status:
        return
    full = diagnose_documents(json.dumps(doc), None, NOW)
    part = diagnose_documents(yaml.safe_dump(statuses), None, NOW)
    wanted = {k for k in key(full) if k[0] in CONTAINER_RULES}
    assert wanted <= set(key(part))


def _fixture_pods() -> list[tuple[str, Doc]]:
    out: list[tuple[str, Doc]] = []
    for path in sorted((FIXTURES / "diagnose").glob("*")) + sorted((FIXTURES / "pods").glob("*")):
        data = yaml.safe_load(path.read_text())
        items = data.get("items", [data]) if isinstance(data, dict) else []
        for item in items:
            if isinstance(item, dict) and item.get("kind", "Pod") == "Pod" and item.get("spec"):
                out.append((f"{path.name}:{item['metadata']['name']}", item))
    return out


@pytest.mark.parametrize(("label", "doc"), _fixture_pods(), ids=[p[0] for p in _fixture_pods()])
def test_every_fixture_pod_diagnosed_from_its_status(label: str, doc: Doc) -> None:
    assert_same_diagnosis(doc)


# --------------------------------------------------------------------------
# Nothing crashes
# --------------------------------------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(["Running", "CrashLoopBackOff", "2025-03-04T11:00:00Z", "Pod", "web"]),
)
KEYS = st.sampled_from(
    [
        "kind",
        "metadata",
        "name",
        "spec",
        "status",
        "containers",
        "containerStatuses",
        "initContainerStatuses",
        "state",
        "lastState",
        "waiting",
        "running",
        "terminated",
        "reason",
        "restartCount",
        "phase",
        "conditions",
        "items",
        "startedAt",
        "exitCode",
        "ready",
    ]
) | st.text(max_size=8)
DOCS = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=30,
)


@settings(
    max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(DOCS, st.sampled_from(["json", "yaml"]))
def test_any_document_is_diagnosed_or_refused_in_one_line(doc: Any, form: str) -> None:
    text = json.dumps(doc) if form == "json" else yaml.safe_dump(doc)
    message = ""
    try:
        result = diagnose_documents(text, None, NOW)
    except InvalidInput as exc:
        message = exc.message
        result = {}
    if not result:
        assert message
        assert "\n" not in message
    else:
        assert "findings" in result or "pods" in result


@settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(st.text(max_size=300))
def test_any_text_is_diagnosed_or_refused(text: str) -> None:
    for events in (None, text):
        with contextlib.suppress(InvalidInput):
            diagnose_documents(text, events, NOW)
