"""No message makes a diagnosis pattern slow: every pattern the rules use, fed adversarial text.

The patterns are collected, not listed: every compiled ``re.Pattern`` held by
a module of ``agent.diagnose`` (or of ``agent.domain.backoff``, which the
rules call, and ``agent.api.redact``, which masks command lines), in module
globals and the tuples and dicts there, plus every
pattern written inline as a string literal in a ``re.*`` call. A pattern
added later is fuzzed without anyone remembering to list it.

Adversarial text is built from each pattern's own literal fragments,
repeated (what makes nested or adjacent unbounded quantifiers backtrack),
at 32 KiB: eight times the 4 KiB the rules cut a message to before any
pattern sees it, so a pattern must be linear to pass, not just short-fed.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import inspect
import pkgutil
import re
import time
from collections.abc import Iterator
from datetime import timedelta
from types import ModuleType
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import agent.diagnose
from agent.api.app import create_app
from agent.diagnose import DiagnosisInput, Finding, diagnose
from agent.domain import backoff
from agent.domain.kubemodel import ApiEvent
from tests.still_node import (
    NOW,
    StillContainer,
    StillPod,
    StillPods,
    still_node,
    still_pod,
    still_settings,
)

# The parser behind re.compile, to read each pattern's literal fragments.
sre_parse: Any = importlib.import_module("re._parser")

SIZE = 32 * 1024
# A linear scan of 32 KiB takes well under a millisecond; a quadratic one
# takes seconds. The margin is for a busy machine.
PER_CALL_SECONDS = 0.25
# What a hostile event message looked like in the review: 120 KB.
HUGE = 120_000


def _modules() -> list[ModuleType]:
    names = [f"agent.diagnose.{m.name}" for m in pkgutil.iter_modules(agent.diagnose.__path__)]
    # The rules call backoff's patterns; the read tier's redaction runs on
    # command lines as long as the kernel allows.
    extra = ("agent.domain.backoff", "agent.api.redact")
    return [importlib.import_module(n) for n in ("agent.diagnose", *names, *extra)]


def _held(value: object, depth: int = 0) -> Iterator[re.Pattern[str]]:
    if isinstance(value, re.Pattern):
        yield value
    elif depth < 3 and isinstance(value, tuple | list | set | frozenset):
        for item in value:
            yield from _held(item, depth + 1)
    elif depth < 3 and isinstance(value, dict):
        for item in value.values():
            yield from _held(item, depth + 1)


_RE_CALLS = {"search", "match", "fullmatch", "findall", "finditer", "sub", "subn", "split"}


def _inline(module: ModuleType) -> Iterator[tuple[str, re.Pattern[str]]]:
    """Patterns written as literals in ``re.<call>("...", ..., flags)``."""
    tree = ast.parse(inspect.getsource(module))
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "re"
            and node.func.attr in _RE_CALLS
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            continue
        flags = 0
        for arg in [*node.args[1:], *(k.value for k in node.keywords)]:
            if isinstance(arg, ast.Attribute) and arg.attr in ("I", "IGNORECASE"):
                flags |= re.I
        yield f"{module.__name__}:{node.lineno}", re.compile(node.args[0].value, flags)


def collect_patterns() -> dict[str, re.Pattern[str]]:
    """Every pattern the rules may run, by where it is defined."""
    found: dict[str, re.Pattern[str]] = {}
    seen: set[tuple[str, int]] = set()
    for module in _modules():
        candidates: list[tuple[str, re.Pattern[str]]] = []
        for name, value in vars(module).items():
            candidates += [(f"{module.__name__}.{name}", p) for p in _held(value)]
        candidates += list(_inline(module))
        for where, pattern in candidates:
            key = (pattern.pattern, pattern.flags)
            if key in seen:
                continue
            seen.add(key)
            suffix = 0
            while f"{where}#{suffix}" in found:
                suffix += 1
            found[f"{where}#{suffix}"] = pattern
    return found


PATTERNS = collect_patterns()


def literals(pattern: re.Pattern[str]) -> list[str]:
    """The literal runs of a pattern ("mount", " onto a file", "exec", ...)."""
    runs: list[str] = []
    current: list[str] = []

    def flush() -> None:
        if current:
            runs.append("".join(current))
            current.clear()

    def visit(items: Any) -> None:
        for op, av in items:
            if op is sre_parse.LITERAL:
                current.append(chr(av))
                continue
            flush()
            if op is sre_parse.SUBPATTERN:
                visit(av[-1])
            elif op in (sre_parse.MAX_REPEAT, sre_parse.MIN_REPEAT, sre_parse.POSSESSIVE_REPEAT):
                visit(av[2])
            elif op is sre_parse.BRANCH:
                for branch in av[1]:
                    visit(branch)
                    flush()
            elif op in (sre_parse.ASSERT, sre_parse.ASSERT_NOT):
                visit(av[1])
            elif op is sre_parse.ATOMIC_GROUP:
                visit(av)
        flush()

    visit(sre_parse.parse(pattern.pattern, pattern.flags))
    return [r for r in runs if r.strip()] or ["a"]


def adversarial(pattern: re.Pattern[str]) -> Iterator[str]:
    """Each literal, and each pair of literals, repeated with and without separators."""
    parts = literals(pattern)
    units = [p + sep for p in parts for sep in ("", " ", "a", "1", '"', ":")]
    units += [a + b for a in parts for b in parts if a != b]
    units += ["1", "a", " ", "\n", "1.", "a1", '"a']
    for unit in units:
        yield (unit * (SIZE // len(unit) + 1))[:SIZE]


def slowest_call(pattern: re.Pattern[str], text: str) -> float:
    """Seconds of the slowest way the rules use a pattern on ``text`` (best of three tries).

    The best of three, because a busy machine stalls any one call now and
    then; a pattern that backtracks is slow every time.
    """
    worst = 0.0
    for use in (pattern.search, pattern.match, lambda t: list(pattern.finditer(t))):
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            use(text)
            best = min(best, time.perf_counter() - started)
            if best < PER_CALL_SECONDS:
                break
        worst = max(worst, best)
        if worst > PER_CALL_SECONDS:
            break
    return worst


def test_the_collection_finds_the_patterns_the_rules_use() -> None:
    from agent.diagnose import _config, _image, _waits

    held = set(PATTERNS.values())
    assert _config._EXEC_TARGET in held
    assert all(p in held for _, p in _config._START_PATTERNS)
    assert all(p in held for _, p in _image._PATTERNS)
    assert _waits._REDIRECTION in held
    assert backoff._GO_DURATION_PART in held
    assert any(where.startswith("agent.diagnose._image:") for where in PATTERNS)  # inline ones
    assert len(PATTERNS) >= 25


@pytest.mark.parametrize("where", sorted(PATTERNS))
def test_every_pattern_is_linear_on_its_own_repeated_fragments(where: str) -> None:
    pattern = PATTERNS[where]
    for text in adversarial(pattern):
        took = slowest_call(pattern, text)
        assert took < PER_CALL_SECONDS, (
            f"{where} /{pattern.pattern}/ took {took:.2f}s on {SIZE} characters of {text[:40]!r}..."
        )


_SEPARATORS = [" ", "\n", '"', ":", "1", ".", "a", "/", "=", "µ", "$", "(", ")", "`", ">", "<", "&"]
FRAGMENTS = [*sorted({lit for p in PATTERNS.values() for lit in literals(p)}), *_SEPARATORS]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=6))
def test_no_pattern_is_slow_on_mixtures_of_fragments(unit: list[str]) -> None:
    joined = "".join(unit)
    text = (joined * (SIZE // len(joined) + 1))[:SIZE]
    for where, pattern in PATTERNS.items():
        took = slowest_call(pattern, text)
        assert took < PER_CALL_SECONDS, f"{where} took {took:.2f}s on {text[:60]!r}..."


# --------------------------------------------------------------------------
# The rules end to end, and the event loop while they run
# --------------------------------------------------------------------------


def hostile_pod() -> tuple[StillPod, list[ApiEvent]]:
    """A pod whose every message is 120 KB of what once made a pattern backtrack."""
    mount = ("mount " * (HUGE // 6))[:HUGE]
    execs = ("exec " * (HUGE // 5))[:HUGE]
    digits = "back-off " + "1" * HUGE + " restarting failed container=app pod=x"
    containers = [
        StillContainer("start", waiting=("RunContainerError", mount)),
        StillContainer("exec", waiting=("CreateContainerError", execs)),
        StillContainer("crash", restarts=3, waiting=("CrashLoopBackOff", digits)),
        StillContainer("image", waiting=("ErrImagePull", "manifest for " * (HUGE // 13))),
        StillContainer("config", waiting=("CreateContainerConfigError", 'secret "' * 15_000)),
    ]
    pod = still_pod("hostile", containers)
    messages = (mount, execs, digits, mount, execs)
    events = [
        ApiEvent(
            namespace="shop",
            name=f"hostile.{i}",
            involved_kind="Pod",
            involved_name="hostile",
            involved_namespace="shop",
            involved_uid=pod.api.uid,
            involved_field_path=f"spec.containers{{{c.name}}}",
            reason="Failed",
            message=message,
            type="Warning",
            count=1,
            last_timestamp=NOW - timedelta(seconds=5),
        )
        for i, (c, message) in enumerate(zip(containers, messages, strict=True))
    ]
    return pod, events


def test_the_rules_answer_quickly_on_hostile_messages() -> None:
    pod, events = hostile_pod()
    inp = DiagnosisInput(pod=pod.api, events=tuple(events), now=NOW)
    started = time.perf_counter()
    found = diagnose(inp)
    took = time.perf_counter() - started
    assert took < 1.0, f"diagnosis took {took:.1f}s"
    assert {f.rule for f in found} >= {"start-error", "image-pull", "config-error", "crashloop"}


async def test_healthz_answers_while_a_hostile_pod_is_diagnosed() -> None:
    pod, events = hostile_pod()
    cfg = still_settings()
    app = create_app(cfg, still_node(cfg, [pod]), StillPods([pod.api], events))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://agent") as client:
        diagnosis = asyncio.create_task(client.get("/v1/pods/shop/hostile/diagnosis", timeout=120))
        await asyncio.sleep(0.01)
        # A probe cycle (a short pause, then /healthz) takes milliseconds
        # unless something holds the event loop; any such hold lands in one.
        slowest = 0.0
        while not diagnosis.done():
            started = time.perf_counter()
            await asyncio.sleep(0.01)
            assert (await client.get("/healthz")).status_code == 200
            slowest = max(slowest, time.perf_counter() - started)
        answer = await diagnosis
    assert answer.status_code == 200, answer.text
    assert slowest < 0.5, f"/healthz waited {slowest:.1f}s behind the diagnosis"


async def test_the_rules_run_in_a_worker_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    on_loop: list[bool] = []
    real = diagnose

    def spy(inp: DiagnosisInput, **kwargs: Any) -> list[Finding]:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return real(inp, **kwargs)

    monkeypatch.setattr("agent.services.agent.diagnose", spy)
    pod, events = hostile_pod()
    cfg = still_settings()
    app = create_app(cfg, still_node(cfg, [pod]), StillPods([pod.api], events))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://agent") as client:
        assert (await client.get("/v1/pods/shop/hostile/diagnosis")).status_code == 200
        assert (await client.get("/v1/diagnostics")).status_code == 200
    assert on_loop
    assert not any(on_loop)
