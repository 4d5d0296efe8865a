"""The web UI's files, and ``/``: a browser is sent to the UI, any other client gets JSON.

The files are static and carry no data: the page asks the API for everything,
with the token the user gives it, so they are served without a token (the
door leaves ``/``, ``/ui`` and ``/ui/...`` open). They are read once from the
package into a table, and a request names an entry of that table: no path
from a request ever reaches the file system.

Every answer under ``/ui`` carries a Content-Security-Policy that allows
scripts, styles and fetches from the agent itself only and no inline script,
style or framing; with the page writing data only as text, a pod name or an
event message crafted as markup stays text.

A route module: imports the errors, fastapi and the standard library only.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Header, Path, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from agent.errors import NotFound

router = APIRouter(include_in_schema=False)

# The package directory the files are shipped in (pyproject's package data).
_PACKAGE = "agent.api"
_DIRECTORY = "webui"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    # Always revalidated (the ETag makes that a 304), so a new agent's page
    # is never mixed with an old one's modules.
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True, slots=True)
class Asset:
    """One file of the UI: its bytes, gzipped bytes, media type and entity tag."""

    body: bytes
    gzipped: bytes
    media_type: str
    etag: str


@functools.cache
def assets() -> dict[str, Asset]:
    """The UI's files by name, read from the package once."""
    table: dict[str, Asset] = {}
    folder = resources.files(_PACKAGE).joinpath(_DIRECTORY)
    for entry in folder.iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if not entry.is_file() or suffix not in _TYPES:
            continue
        body = entry.read_bytes()
        table[entry.name] = Asset(
            body=body,
            gzipped=gzip.compress(body, compresslevel=9, mtime=0),
            media_type=_TYPES[suffix],
            etag='"' + hashlib.sha256(body).hexdigest()[:20] + '"',
        )
    return table


def _prefers_html(accept: str) -> bool:
    """Whether the client is a browser navigating (it lists text/html, JSON clients do not)."""
    return "text/html" in accept and "application/json" not in accept


@router.get("/")
async def root(accept: Annotated[str, Header()] = "") -> Response:
    """A browser is sent to the UI; curl and JSON clients get where things are."""
    if _prefers_html(accept):
        # Relative, so it holds behind a proxy that mounts the agent under a path.
        return RedirectResponse("ui/", status_code=307, headers=SECURITY_HEADERS)
    body = {
        "name": "podlens",
        "ui": "/ui/",
        "api": "/v1",
        "openapi": "/openapi.json",
        "health": ["/healthz", "/readyz"],
    }
    return JSONResponse(body, headers={"X-Content-Type-Options": "nosniff"})


@router.get("/ui")
async def ui_root() -> Response:
    """The UI lives under ``/ui/``, where its relative links resolve."""
    return RedirectResponse("ui/", status_code=307, headers=SECURITY_HEADERS)


@router.get("/ui/")
async def ui_index(request: Request) -> Response:
    """The page itself."""
    return _serve(request, "index.html")


@router.get("/ui/{name}")
async def ui_file(
    request: Request, name: Annotated[str, Path(max_length=64, pattern=r"^[a-z0-9-]+\.[a-z]+$")]
) -> Response:
    """One of the UI's files, by its name."""
    return _serve(request, name)


def _serve(request: Request, name: str) -> Response:
    asset = assets().get(name)
    if asset is None:
        raise NotFound(f"the UI has no file {name!r}", file=name)
    headers = {**SECURITY_HEADERS, "ETag": asset.etag, "Vary": "Accept-Encoding"}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return Response(asset.gzipped, media_type=asset.media_type, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


__all__ = ["CONTENT_SECURITY_POLICY", "SECURITY_HEADERS", "Asset", "assets", "router"]
