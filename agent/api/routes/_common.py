"""Pieces the route modules share: filter parameters and the JSON/text switch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import Query
from fastapi.responses import PlainTextResponse
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


def respond(fmt: OutputFormat, model: M, render: Callable[[M], str]) -> M | PlainTextResponse:
    if fmt is OutputFormat.TEXT:
        return PlainTextResponse(render(model))
    return model
