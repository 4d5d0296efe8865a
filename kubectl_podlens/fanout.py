"""Asking many nodes at once: at most N at a time, each under its own deadline.

A node's deadline starts when its turn comes (not when the command starts),
so one slow node costs at most one deadline of one slot, and the whole
fan-out at most ``ceil(nodes / concurrency) * deadline``. Every node ends in
exactly one of the answers or the unreached list. Imports ``model`` and
the standard library only: what carries the questions is the caller's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from kubectl_podlens.model import AgentPod, FanOut, Reason, Target, Unreached

T = TypeVar("T")

DEFAULT_CONCURRENCY = 16
DEFAULT_DEADLINE_SECONDS = 10.0


class AgentRefused(Exception):
    """A node's agent answered, or could not be reached, in a way that is no answer."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def unreached_before_asking(target: Target) -> Unreached | None:
    """A node not worth a connection: no agent pod, or one the API server says is not ready."""
    if target.agent is None:
        return Unreached(target.node, Reason.NO_AGENT, "no agent pod on this node")
    if not target.agent.ready:
        return Unreached(
            target.node,
            Reason.NOT_READY,
            f"pod {target.agent.name}: {target.agent.not_ready_because}",
        )
    return None


async def gather(
    targets: Sequence[Target],
    ask: Callable[[AgentPod], Awaitable[T]],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    deadline: float = DEFAULT_DEADLINE_SECONDS,
) -> FanOut[T]:
    """Ask every target's agent with ``ask``; the answers and the unreached, by node."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    result: FanOut[T] = FanOut()
    slots = asyncio.Semaphore(concurrency)

    async def one(target: Target) -> None:
        skipped = unreached_before_asking(target)
        if skipped is not None or target.agent is None:
            result.unreached.append(
                skipped or Unreached(target.node, Reason.NO_AGENT, "no agent pod")
            )
            return
        async with slots:
            started = time.monotonic()
            try:
                async with asyncio.timeout(deadline):
                    result.answers[target.node] = await ask(target.agent)
            except TimeoutError:
                result.unreached.append(
                    Unreached(target.node, Reason.TIMED_OUT, f"no answer within {deadline:g}s")
                )
            except AgentRefused as refused:
                result.unreached.append(Unreached(target.node, refused.reason, refused.detail))
            finally:
                result.seconds[target.node] = time.monotonic() - started

    await asyncio.gather(*(one(t) for t in targets))
    result.unreached.sort(key=lambda u: u.node)
    return result
