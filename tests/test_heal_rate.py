"""The node-wide kill rate holds under requests that overlap: checked and recorded in one step."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent import host
from agent.api.app import create_app
from agent.errors import ProcessGone
from tests.still_node import NOW, StillContainer, StillPods, still_node, still_pod, still_settings

PODS = 5


@pytest.fixture
def slow_preflight(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Preflight takes a while (as /proc reads do on a busy node); nothing is ever signalled."""
    signalled: list[int] = []
    # Every preflight waits for the others, so all five are past their checks
    # before any run starts (if preflights were serialized, the wait times out).
    together = threading.Barrier(PODS, timeout=2)

    def start_time(pid: int, proc_root: Path = Path("/proc")) -> datetime:
        with contextlib.suppress(threading.BrokenBarrierError):
            together.wait()
        return NOW

    def never_signal(pid: int, *args: Any, **kwargs: Any) -> Any:
        signalled.append(pid)
        raise ProcessGone(f"process {pid} is a stand-in", pid=pid)

    monkeypatch.setattr(host, "process_start_time", start_time)
    monkeypatch.setattr(host, "signal_container_process", never_signal)
    return signalled


async def test_overlapping_kills_cannot_all_pass_the_rate_limit(slow_preflight: list[int]) -> None:
    settings = still_settings(enable_kill=True, kill_namespaces=("shop",), kill_rate_per_minute=1)
    pods = [
        still_pod(f"web-{i}", [StillContainer("app", pid=4_300_000 + i)], index=i)
        for i in range(PODS)
    ]
    app = create_app(settings, still_node(settings, pods), StillPods(p.api for p in pods))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://agent") as client:
        answers = await asyncio.gather(
            *(
                client.post(f"/v1/pods/shop/web-{i}/kill-and-watch", json={"container": "app"})
                for i in range(PODS)
            )
        )
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [202] + [429] * (PODS - 1), [a.text for a in answers]
    limited = [a.json() for a in answers if a.status_code == 429]
    assert all(body["detail"]["rule"] == "rate-limited" for body in limited)
    assert len(app.state.agent.heal.runs) == 1
    await asyncio.sleep(0.05)  # the one run tries its (stand-in) kill
    assert len(slow_preflight) == 1
