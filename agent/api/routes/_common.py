"""Pieces the route modules share: filter parameters and the JSON/text switch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import Query
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel

from agent.api.deps import OutputFormat

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
