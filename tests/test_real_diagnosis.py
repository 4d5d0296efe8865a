"""Diagnosis of what the real kubelet writes: each failing pod gets its rule.

The failing pods of ``tests/fixtures/real/states.yaml`` and the exercises that
fail, renamed ``diag-*``, run on the real kubelet. The agent must name each
one's rule in GET /v1/diagnostics and in GET /v1/pods/{ns}/{name}/diagnosis,
and where a rule quotes events, the quotes must be kubelet's own event
messages as the API server holds them. Two rules only speak after a minute
(an init container waiting, a container not ready), so the findings are read
until every pod has what it should, within a bound.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from lab.exercises import get as exercise
from tests.real_cluster import RealCluster, load_manifests, note, renamed

pytest_plugins = ("tests.real_cluster",)
pytestmark = [pytest.mark.containerd, pytest.mark.real, pytest.mark.usefixtures("module_timer")]

PREFIX = "diag-"
# init-waiting and not-ready wait 60 s by default; the kubelet needs a few
# more to start the pods and report.
DEADLINE = 150.0


@dataclass(frozen=True, slots=True)
class Expect:
    """The rule a pod must get, for which container, and what its evidence must hold."""

    rule: str
    container: str
    quotes_events: bool
    evidence: tuple[str, ...] = ()


EXPECT: dict[str, Expect] = {
    "crashloop-demo": Expect(
        "crashloop",
        "app",
        quotes_events=False,
        evidence=("error: cannot open /config/app.conf",),
    ),
    "init-fail-demo": Expect(
        "init-crashloop",
        "migrate",
        quotes_events=False,
        evidence=("migration failed: schema version 7 not found",),
    ),
    "init-demo": Expect(
        "init-waiting",
        "init-wait",
        quotes_events=False,
        evidence=("no Service named myservice in namespace default",),
    ),
    "nopull": Expect("image-pull", "app", quotes_events=True, evidence=("no-such-image",)),
    "cfgkey": Expect(
        "config-error", "app", quotes_events=True, evidence=("missing-key", "app-settings")
    ),
    "oom": Expect("oom-killed", "hog", quotes_events=False, evidence=("24Mi",)),
    "unready": Expect("not-ready", "app", quotes_events=True, evidence=("Readiness probe failed",)),
    "failed": Expect(
        "container-failed", "job", quotes_events=False, evidence=("cannot reach the database",)
    ),
}


def manifests() -> list[dict[str, Any]]:
    states = {
        m["metadata"]["name"]: m
        for m in load_manifests("states.yaml")
        if m["kind"] == "Pod" and m["metadata"]["name"] in EXPECT
    }
    config = [m for m in load_manifests("states.yaml") if m["kind"] == "ConfigMap"]
    pods = [
        yaml.safe_load(exercise(n).text()) if n not in states else states[n] for n in sorted(EXPECT)
    ]
    return [*config, *(renamed(p, PREFIX) for p in pods)]


@dataclass(slots=True)
class Seen:
    """The last findings read for a pod, from both routes."""

    node_wide: list[dict[str, Any]]
    pod: dict[str, Any]
    events: list[dict[str, Any]]


def kubelet_messages(events: list[dict[str, Any]]) -> dict[str, list[str]]:
    """kubelet's event messages for the pod, by reason."""
    out: dict[str, list[str]] = {}
    for ev in events:
        source = (ev.get("source") or {}).get("component") or ev.get("reportingComponent")
        if source == "kubelet":
            out.setdefault(str(ev.get("reason")), []).append(str(ev.get("message") or ""))
    return out


def quotes(value: str, message: str) -> bool:
    """``value`` is the start of ``message`` as the agent quotes it (first lines, maybe cut)."""
    first = value.strip().splitlines()[0] if value.strip() else ""
    first = first.removesuffix("...").removesuffix("…").rstrip()
    return bool(first) and message.strip().startswith(first)


def event_quotes(finding: dict[str, Any], events: list[dict[str, Any]]) -> list[str]:
    """Why the finding's event evidence is not kubelet's word (empty when it is)."""
    messages = kubelet_messages(events)
    problems = []
    for ev in finding["evidence"]:
        if ev["kind"] != "event":
            continue
        reason = ev["label"].split(" ", 1)[0]
        if not any(quotes(ev["value"], m) for m in messages.get(reason, [])):
            problems.append(f"{ev['label']}: {ev['value']!r} is not a kubelet {reason} event")
    return problems


def matching(findings: list[dict[str, Any]], name: str, expect: Expect) -> dict[str, Any] | None:
    for f in findings:
        if f["pod"] == name and f["rule"] == expect.rule and f["container"] == expect.container:
            return f
    return None


def complete(seen: Seen, name: str, expect: Expect) -> bool:
    """Both routes have the rule, and its evidence holds what it must."""
    found = matching(seen.pod["findings"], name, expect)
    if found is None or matching(seen.node_wide, name, expect) is None:
        return False
    text = " ".join(f"{e['label']} {e['value']}" for e in found["evidence"]) + found["summary"]
    if not all(word in text for word in expect.evidence):
        return False
    has_events = any(e["kind"] == "event" for e in found["evidence"])
    return has_events or not expect.quotes_events


@pytest.fixture(scope="module")
def diagnosed(real_cluster: RealCluster) -> Iterator[dict[str, Seen]]:
    real_cluster.apply(manifests())
    names = {PREFIX + n: e for n, e in EXPECT.items()}
    seen: dict[str, Seen] = {}
    t0 = time.monotonic()
    try:
        waiting = set(names)
        while waiting and time.monotonic() - t0 < DEADLINE:
            node_wide = real_cluster.agent_json("/v1/diagnostics")["items"]
            for name in sorted(waiting):
                pod = real_cluster.agent_json(f"/v1/pods/default/{name}/diagnosis")
                seen[name] = Seen(node_wide, pod, real_cluster.events(name))
                if complete(seen[name], name, names[name]):
                    waiting.discard(name)
                    took = time.monotonic() - t0
                    note(f"diagnosis: {name} -> {names[name].rule} after {took:.0f}s")
            time.sleep(1.0)
        yield seen
    finally:
        real_cluster.delete_pods(sorted(names))


def _finding(seen: Seen, name: str, expect: Expect) -> dict[str, Any]:
    found = matching(seen.pod["findings"], name, expect)
    assert found is not None, (
        f"{name}: no {expect.rule} for {expect.container}; the agent said "
        + repr([(f["rule"], f["container"], f["summary"]) for f in seen.pod["findings"]])
    )
    return found


@pytest.mark.parametrize("base", sorted(EXPECT))
def test_each_failure_gets_its_rule(diagnosed: dict[str, Seen], base: str) -> None:
    name, expect = PREFIX + base, EXPECT[base]
    seen = diagnosed[name]
    found = _finding(seen, name, expect)
    assert matching(seen.node_wide, name, expect) is not None, (
        f"{name}: /v1/diagnostics lacks {expect.rule}"
    )
    text = " ".join(f"{e['label']} {e['value']}" for e in found["evidence"]) + found["summary"]
    for word in expect.evidence:
        assert word in text, f"{name}: {word!r} not in the evidence: {found['evidence']}"


@pytest.mark.parametrize("base", sorted(b for b, e in EXPECT.items() if e.quotes_events))
def test_quoted_events_are_kubelets_own(diagnosed: dict[str, Seen], base: str) -> None:
    name, expect = PREFIX + base, EXPECT[base]
    seen = diagnosed[name]
    found = _finding(seen, name, expect)
    quoted = [e for e in found["evidence"] if e["kind"] == "event"]
    assert quoted, f"{name}: {expect.rule} quotes no event; kubelet said {seen.events}"
    assert not event_quotes(found, seen.events), event_quotes(found, seen.events)


def test_every_event_quote_in_every_finding_is_kubelets(diagnosed: dict[str, Seen]) -> None:
    problems: list[str] = []
    for name, seen in diagnosed.items():
        for finding in seen.pod["findings"]:
            problems += [
                f"{name} {finding['rule']}: {p}" for p in event_quotes(finding, seen.events)
            ]
    assert not problems, problems


def test_findings_are_ordered_most_severe_first(diagnosed: dict[str, Seen]) -> None:
    rank: Callable[[str], int] = ["critical", "error", "warning", "info"].index
    any_seen = next(iter(diagnosed.values()))
    severities = [rank(f["severity"]) for f in any_seen.node_wide]
    assert severities == sorted(severities)
