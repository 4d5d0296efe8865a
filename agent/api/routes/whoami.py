"""Who the caller is and what they may do here: what a client shows or hides before it asks.

The web UI shows the kill controls only to a caller this route says may kill,
and the log buttons only to one who may read logs. It decides nothing: every
request is still checked by the door, so a client that ignores this answer
only gets the 403 it would have got anyway.

A route module: imports the HTTP edge's auth and schemas, ``agent.kube``'s review
types, the errors, the settings, and fastapi and anyio.
"""

from __future__ import annotations

from typing import Annotated

import anyio
import anyio.to_thread
from fastapi import APIRouter, Query, Request

from agent.api.auth import HEAL, READ, READ_LOGS, Caller, CallerDep, PodAccess
from agent.api.deps import AgentDep
from agent.api.routes._common import DNS1123_LABEL
from agent.api.schemas import ErrorBody, KillPolicyItem, NamespaceAccessItem, WhoAmI
from agent.errors import ApiServerError
from agent.kube import AccessReviewer, ResourceAttributes, UserInfo
from agent.settings import Settings

router = APIRouter(prefix="/v1", tags=["caller"])

# The door's own margin over the client's timeout (auth._DEADLINE_GRACE_SECONDS).
_DEADLINE_GRACE_SECONDS = 0.5


@router.get(
    "/whoami",
    response_model=WhoAmI,
    response_model_exclude_none=True,
    responses={503: {"model": ErrorBody, "description": "the API server cannot be asked"}},
)
async def whoami(
    request: Request,
    agent: AgentDep,
    caller: CallerDep,
    namespace: Annotated[
        str | None,
        Query(
            max_length=63,
            pattern=DNS1123_LABEL,
            description="also say what the caller may do to the pods of this namespace",
        ),
    ] = None,
) -> WhoAmI:
    """The caller's name and what they may do on this node (and in ``?namespace=``)."""
    settings = agent.settings
    policy = KillPolicyItem(
        enabled=settings.enable_kill,
        namespaces=list(settings.kill_namespaces),
        opt_in_label=settings.kill_opt_in_label,
        allow_system=settings.kill_allow_system,
        rate_per_minute=settings.kill_rate_per_minute,
    )
    asks: list[ResourceAttributes] = [
        READ.attributes(settings.node_name),
        READ_LOGS.attributes(settings.node_name),
        HEAL.attributes(settings.node_name),
    ]
    if namespace is not None:
        asks.append(PodAccess("get", "log", namespace).attributes())
        asks.append(PodAccess("delete", "", namespace).attributes())
    answers = await _decide(request, caller, asks, settings)
    read, read_logs, heal = answers[0], answers[1], answers[2] and settings.enable_kill
    access = None
    if namespace is not None:
        access = NamespaceAccessItem(
            namespace=namespace, read_logs=read_logs and answers[3], kill=heal and answers[4]
        )
    return WhoAmI(
        user=caller.name,
        via=caller.via,
        groups=list(caller.groups),
        node_name=settings.node_name,
        read=read,
        read_logs=read_logs,
        heal=heal,
        kill_policy=policy,
        namespace_access=access,
    )


async def _decide(
    request: Request, caller: Caller, asks: list[ResourceAttributes], settings: Settings
) -> list[bool]:
    """The API server's answer to each question, as the door would ask it for this caller."""
    if caller.via == "unchecked":
        # No door: whoever reaches the port holds every permission.
        return [True] * len(asks)
    reviewer: AccessReviewer | None = getattr(request.app.state, "reviewer", None)
    if caller.via != "token" or reviewer is None:
        # Trusted loopback reads and does nothing more; nothing else reaches here
        # without a token.
        read = READ.attributes(settings.node_name)
        return [caller.via == "loopback" and ask == read for ask in asks]
    user = UserInfo(caller.name, caller.uid, caller.groups)
    answers: list[bool] = []
    deadline = settings.auth_timeout_seconds + _DEADLINE_GRACE_SECONDS
    try:
        # One after another under one deadline: a page asks this once, on load.
        with anyio.fail_after(deadline):
            for attributes in asks:
                decision = await anyio.to_thread.run_sync(
                    reviewer.review_access, user, attributes, abandon_on_cancel=True
                )
                answers.append(decision.allowed)
    except TimeoutError:
        raise ApiServerError(f"API server: no answer within {deadline:g} s") from None
    return answers


__all__ = ["router"]
