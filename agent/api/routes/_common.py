"""Pieces the route modules share: filter parameters and the JSON/text switch.

Part of the HTTP edge: imports auth and deps, the errors, ``agent.kube``'s caller type,
and fastapi, pydantic and anyio.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

import anyio.to_thread
from fastapi import Depends, Query, Request
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel

from agent.api.auth import READ_LOGS, get_caller
from agent.api.deps import OutputFormat
from agent.errors import Forbidden
from agent.kube import UserInfo

M = TypeVar("M", bound=BaseModel)

# Kubernetes name rules: namespaces and container names are DNS-1123 labels,
# pod names DNS-1123 subdomains.
DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

NamespaceFilter = Annotated[
    str | None, Query(max_length=63, pattern=DNS1123_LABEL, description="pod namespace")
]
PodFilter = Annotated[
    str | None, Query(max_length=253, pattern=DNS1123_SUBDOMAIN, description="pod name")
]
ContainerNameFilter = Annotated[
    str | None, Query(max_length=63, pattern=DNS1123_LABEL, description="container name")
]
# Full IDs are 64 hex characters; any unique prefix is accepted, as crictl does.
ID_PATTERN = r"^[0-9a-fA-F]{1,64}$"


def respond(fmt: OutputFormat, model: M, render: Callable[[M], str]) -> Response:
    """The model as JSON, or rendered as text.

    The JSON is written straight from the model: handing the model back to
    FastAPI would have it dump, validate against the response model again,
    and serialize, which for a node's pod list costs more than building it.
    The routes still declare their response model for the OpenAPI document.
    """
    if fmt is OutputFormat.TEXT:
        return PlainTextResponse(render(model))
    return Response(model.model_dump_json(), media_type="application/json")


async def full_cmdline(
    request: Request,
    full_cmdline: Annotated[
        bool,
        Query(
            description="whole command lines, secrets included (needs get nodes/podlens-logs); "
            "without it, secret-looking values show as ***"
        ),
    ] = False,
) -> bool:
    """Whether to show whole command lines: asked for, and the caller may read logs.

    Command lines hold what logs hold (passwords, tokens), so they take the
    logs permission. The door checked the read permission for the path; the
    logs permission is asked here, of the API server, only when a request
    wants the whole lines. Refused with 403 rather than quietly masked, so
    that no one takes a masked line for the real one.
    """
    if not full_cmdline:
        return False
    auth = getattr(request.app.state, "auth", None)
    if auth is None or auth.mode == "none":
        return True  # no door: whoever reaches the port holds every tier
    caller = get_caller(request)
    reviewer = getattr(request.app.state, "reviewer", None)
    if caller.via == "token" and reviewer is not None:
        user = UserInfo(caller.name, caller.uid, caller.groups)
        attributes = READ_LOGS.attributes(auth.node_name)
        decision = await anyio.to_thread.run_sync(reviewer.review_access, user, attributes)
        if decision.allowed:
            return True
    raise Forbidden(
        f"{caller.name} may not {READ_LOGS.describe()} on node {auth.node_name}, which whole "
        "command lines need (they may hold passwords and tokens); without full_cmdline the "
        "answer masks secret-looking values",
        permission=READ_LOGS.describe(),
    )


FullCmdlineDep = Annotated[bool, Depends(full_cmdline)]
