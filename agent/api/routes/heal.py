"""Kill-and-watch: start a guarded run, list runs, follow one live.

A route module: imports the HTTP edge's deps, schemas and renderings, the Agent, the
heal service and the errors.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from agent.api import render
from agent.api.deps import AgentDep, OutputDep
from agent.api.routes._common import DNS1123_LABEL, DNS1123_SUBDOMAIN, respond
from agent.api.schemas import (
    ErrorBody,
    HealRunItem,
    HealRunSummary,
    ItemList,
    KillAccepted,
    KillBody,
    PhaseItem,
    PlanItem,
    TargetItem,
)
from agent.errors import InvalidInput, NotFound
from agent.services.agent import Agent
from agent.services.heal import HealRun, KillRequest, Plan, parse_signal

router = APIRouter(tags=["heal"])

_REFUSALS: dict[int | str, dict[str, object]] = {
    403: {"model": ErrorBody, "description": "disabled, not allowed, own or system pod"},
    404: {"model": ErrorBody, "description": "no such pod or container"},
    409: {"model": ErrorBody, "description": "not running, or a run is already watching it"},
    422: {"model": ErrorBody, "description": "bad request, or the restart policy forbids it"},
    429: {"model": ErrorBody, "description": "rate limited"},
    503: {
        "model": ErrorBody,
        "description": "container runtime unavailable, or pidfds unavailable on this node",
    },
}


def caller_of(request: Request) -> str:
    """Who asks, as the audit log names them."""
    user = getattr(request.state, "user", None)
    if user:
        return str(user)
    host = request.client.host if request.client else "unknown"
    return f"{host} (unauthenticated)"


def _target(plan: Plan) -> TargetItem:
    t = plan.target
    return TargetItem(
        kind="container" if t.container else "sandbox",
        namespace=t.namespace,
        pod=t.pod,
        pod_uid=t.pod_uid,
        container=t.container,
        container_id=t.container_id,
        sandbox_id=t.sandbox_id,
        pid=t.pid,
        attempt=t.attempt,
        restart_count=t.restart_count,
    )


def plan_item(plan: Plan) -> PlanItem:
    """The plan on the wire: target, signal, timeout, the attempt and delay expected, steps."""
    return PlanItem(
        target=_target(plan),
        signal=plan.signal_name,
        timeout_seconds=plan.timeout_seconds,
        expected_attempt=plan.expected_attempt,
        expected_delay_seconds=plan.expected_delay_seconds,
        expected_delay_reason=plan.expected_delay_reason,
        restart_policy=plan.restart_policy,
        steps=list(plan.steps),
    )


def run_item(run: HealRun) -> HealRunItem:
    """The run on the wire, each phase also timed from the signal."""
    signal_at = run.phases[0].at if run.phases else None
    return HealRunItem(
        id=run.id,
        state=run.state.value,
        target=_target(run.plan),
        plan=plan_item(run.plan),
        requested_by=run.requested_by,
        requested_at=run.requested_at,
        finished_at=run.finished_at,
        phases=[
            PhaseItem(
                name=p.name,
                at=p.at,
                since_signal_seconds=(
                    round((p.at - signal_at).total_seconds(), 4) if signal_at else None
                ),
                detail=dict(p.detail),
            )
            for p in run.phases
        ],
        time_to_recover_seconds=run.time_to_recover_seconds,
        verdict=run.verdict,
        diagnosis_url=run.diagnosis_url,
    )


@router.post(
    "/v1/pods/{namespace}/{name}/kill-and-watch",
    status_code=202,
    response_model=KillAccepted,
    responses={200: {"model": KillAccepted, "description": "dry run: the plan"}, **_REFUSALS},
)
async def kill_and_watch(
    request: Request,
    agent: AgentDep,
    body: KillBody,
    namespace: Annotated[str, Path(max_length=63, pattern=DNS1123_LABEL)],
    name: Annotated[str, Path(max_length=253, pattern=DNS1123_SUBDOMAIN)],
) -> KillAccepted | JSONResponse:
    """Kill a container's process or the pause once every guard allows it, and watch recovery."""
    if (body.container is None) == (not body.sandbox):
        raise InvalidInput('give exactly one target: {"container": "<name>"} or {"sandbox": true}')
    kill = KillRequest(
        container=body.container,
        sandbox=body.sandbox,
        signal=parse_signal(body.signal),
        timeout_seconds=body.timeout_seconds or agent.settings.kill_timeout_seconds,
        dry_run=body.dry_run,
    )
    manager = agent.heal
    caller = caller_of(request)
    # Preflight reads /proc and fsyncs the audit log: keep it off the event loop.
    plan = await anyio.to_thread.run_sync(manager.preflight, namespace, name, kill, caller)
    if kill.dry_run:
        accepted = KillAccepted(
            id=None,
            dry_run=True,
            state="dry_run",
            plan=plan_item(plan),
            run_url=None,
            events_url=None,
        )
        return JSONResponse(status_code=200, content=accepted.model_dump(mode="json"))
    run = manager.start(plan, caller)
    return KillAccepted(
        id=run.id,
        dry_run=False,
        state=run.state.value,
        plan=plan_item(plan),
        run_url=f"/v1/heal/runs/{run.id}",
        events_url=f"/v1/heal/runs/{run.id}/events",
    )


@router.get("/v1/heal/runs", response_model=ItemList[HealRunSummary])
def list_runs(agent: AgentDep, fmt: OutputDep) -> Response:
    """Every kill-and-watch run, newest first."""
    items = [
        HealRunSummary(
            id=r.id,
            state=r.state.value,
            namespace=r.plan.target.namespace,
            pod=r.plan.target.pod,
            target=r.plan.target.container or "sandbox",
            requested_at=r.requested_at,
            time_to_recover_seconds=r.time_to_recover_seconds,
            verdict=r.verdict,
        )
        for r in reversed(agent.heal.runs.values())
    ]
    return respond(fmt, ItemList[HealRunSummary](items=items), lambda m: render.runs(m.items))


RunId = Annotated[str, Path(pattern=r"^[0-9a-f]{12}$", description="run id")]


def _find(agent: Agent, run_id: str) -> HealRun:
    run = agent.heal.runs.get(run_id)
    if run is None:
        raise NotFound(f"no kill-and-watch run {run_id!r}", run=run_id)
    return run


@router.get(
    "/v1/heal/runs/{run_id}", response_model=HealRunItem, responses={404: {"model": ErrorBody}}
)
def get_run(agent: AgentDep, fmt: OutputDep, run_id: RunId) -> Response:
    """One run with its plan, phases and verdict."""
    return respond(fmt, run_item(_find(agent, run_id)), render.run_detail)


@router.get(
    "/v1/heal/runs/{run_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "server-sent events"},
        404: {"model": ErrorBody},
    },
)
def stream_run(request: Request, agent: AgentDep, run_id: RunId) -> StreamingResponse:
    """Each phase as a server-sent event as it happens (`curl -N`), then the verdict."""
    run = _find(agent, run_id)
    return StreamingResponse(
        _events(request, run),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(request: Request, run: HealRun) -> AsyncIterator[str]:
    # Phases are kept in time order and runtime phases carry the runtime's own
    # (earlier) timestamps, so a new phase may land before others: track by name.
    sent: set[str] = set()
    while True:
        changed = run.changed
        item = run_item(run)
        for phase in item.phases:
            if phase.name in sent:
                continue
            sent.add(phase.name)
            yield f"event: phase\ndata: {json.dumps(phase.model_dump(mode='json'))}\n\n"
        if run.done:
            summary = {
                "id": run.id,
                "state": run.state.value,
                "time_to_recover_seconds": run.time_to_recover_seconds,
                "verdict": run.verdict,
            }
            yield f"event: verdict\ndata: {json.dumps(summary)}\n\n"
            return
        if await request.is_disconnected():
            return
        try:
            async with asyncio.timeout(15):
                await changed.wait()
        except TimeoutError:
            yield ": keep-alive\n\n"
