"""The web UI over HTTP: its files are open and carry no data, everything else stays behind
the door; the security headers; ``/`` for browsers and for curl; ``/v1/whoami``.

The door is the real one, asking the lab's API server (TokenReview and
SubjectAccessReview) over HTTP. What the page does in a browser is
``tests/test_ui_browser.py``.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from agent.api.app import create_app
from agent.api.auth import READ, required_permission
from agent.api.routes.ui import assets
from agent.kube import DisabledPodCache
from agent.settings import Settings
from lab.apiserver import FakeApiServer
from tests.test_auth import (
    LOG_READER,
    NODE,
    OPERATOR,
    READER,
    REMOTE,
    TOKENS,
    QuietNode,
    Reviews,
    bearer,
)

WEBUI = Path(__file__).resolve().parent.parent / "agent" / "api" / "webui"
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


# The same users, with tokens minted for the agent (audience podlens), as it requires.
AGENT_TOKENS = {
    token: None if user is None else {**user, "audiences": ["podlens"]}
    for token, user in TOKENS.items()
}


@pytest.fixture
def fake() -> Iterator[FakeApiServer]:
    with FakeApiServer(tokens=AGENT_TOKENS, authorizer=Reviews().authorize) as server:
        yield server


def app_with(**settings: Any) -> FastAPI:
    values: dict[str, Any] = {
        "node_name": NODE,
        "cri_endpoint": "/run/containerd/containerd.sock",
        "enable_kill": True,
        "kill_namespaces": ("shop",),
    }
    values.update(settings)
    made = Settings(**values)
    node = QuietNode(made)
    node.load_empty()
    return create_app(made, node, DisabledPodCache())


@pytest.fixture
def client(fake: FakeApiServer) -> Iterator[TestClient]:
    app = app_with(api_server=fake.url, auth_mode="kubernetes")
    with TestClient(app, raise_server_exceptions=False, client=REMOTE) as made:
        yield made


# --------------------------------------------------------------------- what is open


@pytest.mark.parametrize("path", ["/", "/ui", "/ui/", "/ui/app.js", "/ui/no-such.js"])
def test_the_ui_and_the_root_need_no_token(path: str) -> None:
    assert required_permission("GET", path) is None


@pytest.mark.parametrize(
    "path",
    [
        "/ui/../v1/pods",
        "/ui/./app.js",
        "/ui/app.js/",
        "/ui/x/app.js",
        "/ui/../metrics",
        "//ui/x",
        "/uix",
        "/ui-v1/pods",
        "/v1/ui/x",
        "/metrics/ui/",
    ],
)
def test_nothing_else_is_opened_by_the_ui_prefix(path: str) -> None:
    assert required_permission("GET", path) == READ


def test_every_file_is_served_without_a_token_with_strict_headers(client: TestClient) -> None:
    names = sorted(assets())
    assert {"index.html", "app.js", "app.css", "api.js", "dom.js"} <= set(names)
    assert names == sorted(
        p.name for p in WEBUI.iterdir() if p.suffix in {".html", ".js", ".css", ".svg"}
    )
    for name in names:
        r = client.get("/ui/" if name == "index.html" else f"/ui/{name}")
        assert r.status_code == 200, (name, r.text)
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "'unsafe-inline'" not in csp
        assert "frame-ancestors 'none'" in csp
        assert "default-src 'none'" in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.content == (WEBUI / name).read_bytes()
    assert client.get("/ui/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/ui/").headers["content-type"].startswith("text/html")


def test_data_still_needs_a_token_whatever_the_path(client: TestClient) -> None:
    for path in (
        "/v1/pods",
        "/v1/whoami",
        "/metrics",
        "/ui/../v1/pods",
        "/ui/%2e%2e/v1/pods",
        "/ui/..%2fv1%2fpods",
        "//ui/x",
    ):
        r = client.get(path)
        assert r.status_code in (401, 404, 422), (path, r.status_code)
        assert "items" not in r.text, path
    assert client.get("/v1/pods").status_code == 401
    # Writing under /ui is a write like any other: it needs the heal permission.
    assert client.post("/ui/app.js").status_code == 401
    assert client.post("/ui/app.js", headers=bearer("reader-token")).status_code == 403


def test_only_the_shipped_files_are_served(client: TestClient) -> None:
    for name in ("no-such.js", "app.py", "__init__.py", "..%2f__init__.py", ".%2e%2fauth.py"):
        r = client.get(f"/ui/{name}")
        # 404 for a file-shaped name the UI lacks; anything else is not open at all.
        assert r.status_code in (401, 404, 422), (name, r.status_code)
        assert r.headers["content-type"].startswith("application/json")
        assert "import" not in r.text


def test_the_files_are_gzipped_and_revalidated(client: TestClient) -> None:
    first = client.get("/ui/app.js", headers={"Accept-Encoding": "gzip"})
    assert first.headers["content-encoding"] == "gzip"
    # httpx has decoded it; the raw bytes on the wire are the gzip.
    assert first.content == (WEBUI / "app.js").read_bytes()
    assert len(gzip.compress((WEBUI / "app.js").read_bytes())) < len(first.content)
    again = client.get("/ui/app.js", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""
    assert "script-src 'self'" in again.headers["content-security-policy"]


def test_a_browser_asking_for_the_root_is_sent_to_the_ui_and_curl_gets_json(
    client: TestClient,
) -> None:
    browser = client.get("/", headers={"Accept": BROWSER_ACCEPT}, follow_redirects=False)
    assert browser.status_code == 307
    assert browser.headers["location"] == "ui/"
    assert client.get("/ui", follow_redirects=False).headers["location"] == "ui/"
    for accept in ("*/*", "application/json", None):
        headers = {"Accept": accept} if accept else {}
        r = client.get("/", headers=headers, follow_redirects=False)
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/json"
        body = r.json()
        assert body["ui"] == "/ui/"
        assert body["openapi"] == "/openapi.json"
        # Open, so it names nothing of the node.
        assert NODE not in r.text


# --------------------------------------------------------------------- the page's code


class _Markup(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.inline: list[str] = []
        self.handlers: list[str] = []
        self.styles: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        self.handlers += [name for name in named if name.startswith("on")]
        if "style" in named or tag == "style":
            self.styles.append(tag)
        if tag == "script":
            self.scripts.append(named)
            self._in_script = True

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append(data)


def test_the_page_has_no_inline_script_style_or_handler() -> None:
    markup = _Markup()
    markup.feed((WEBUI / "index.html").read_text())
    assert markup.scripts == [{"type": "module", "src": "app.js"}]
    assert markup.inline == []
    assert markup.handlers == []
    assert markup.styles == []


# Ways to turn a string into markup or code; data must go in as text only.
_SINKS = re.compile(
    r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|"
    r"setTimeout\(\s*['\"`]|createContextualFragment|srcdoc|javascript:"
)


def test_the_scripts_never_write_markup_or_run_strings() -> None:
    for path in sorted(WEBUI.glob("*.js")):
        found = _SINKS.findall(path.read_text())
        assert found == [], (path.name, found)
    # The token stays in this tab's storage: never localStorage, a cookie or a URL.
    sources = "\n".join(p.read_text() for p in WEBUI.glob("*.js"))
    assert "localStorage" not in sources
    assert "document.cookie" not in sources
    assert "sessionStorage" in (WEBUI / "api.js").read_text()


# --------------------------------------------------------------------- whoami


def test_whoami_says_what_a_reader_may_do(client: TestClient) -> None:
    r = client.get("/v1/whoami?namespace=shop", headers=bearer("reader-token"))
    assert r.status_code == 200, r.text
    me = r.json()
    assert me["user"] == READER
    assert me["via"] == "token"
    assert (me["read"], me["read_logs"], me["heal"]) == (True, False, False)
    assert me["namespace_access"] == {"namespace": "shop", "read_logs": False, "kill": False}
    assert me["kill_policy"]["enabled"] is True
    assert me["kill_policy"]["namespaces"] == ["shop"]


def test_whoami_says_where_an_operator_may_kill(client: TestClient) -> None:
    me = client.get("/v1/whoami?namespace=shop", headers=bearer("operator-token")).json()
    assert me["user"] == OPERATOR
    assert (me["read"], me["heal"]) == (True, True)
    assert me["namespace_access"]["kill"] is True
    elsewhere = client.get("/v1/whoami?namespace=web", headers=bearer("operator-token")).json()
    assert elsewhere["namespace_access"]["kill"] is False
    assert (
        "namespace_access" not in client.get("/v1/whoami", headers=bearer("operator-token")).json()
    )


def test_whoami_says_where_a_log_reader_may_read_logs(client: TestClient) -> None:
    shop = client.get("/v1/whoami?namespace=shop", headers=bearer("logs-token")).json()
    assert shop["user"] == LOG_READER
    assert shop["read_logs"] is True
    assert shop["namespace_access"] == {"namespace": "shop", "read_logs": True, "kill": False}
    web = client.get("/v1/whoami?namespace=web", headers=bearer("logs-token")).json()
    assert web["namespace_access"]["read_logs"] is False


def test_whoami_agrees_with_the_door(client: TestClient) -> None:
    """What whoami says the operator may not do, the door refuses; what it may, it lets by."""
    me = client.get("/v1/whoami?namespace=web", headers=bearer("operator-token")).json()
    assert me["read_logs"] is False
    assert client.get("/v1/diagnostics", headers=bearer("operator-token")).status_code == 403
    assert me["namespace_access"]["kill"] is False
    refused = client.post(
        "/v1/pods/web/api/kill-and-watch",
        json={"container": "c", "dry_run": True},
        headers=bearer("operator-token"),
    )
    assert refused.status_code == 403


def test_whoami_without_kill_enabled_offers_no_kill(fake: FakeApiServer) -> None:
    app = app_with(api_server=fake.url, auth_mode="kubernetes", enable_kill=False)
    with TestClient(app, raise_server_exceptions=False, client=REMOTE) as client:
        me = client.get("/v1/whoami?namespace=shop", headers=bearer("operator-token")).json()
    assert me["heal"] is False
    assert me["namespace_access"]["kill"] is False
    assert me["kill_policy"]["enabled"] is False


def test_whoami_needs_a_token_and_checks_its_input(client: TestClient) -> None:
    assert client.get("/v1/whoami").status_code == 401
    assert client.get("/v1/whoami", headers=bearer("nobody-token")).status_code == 403
    bad = client.get("/v1/whoami?namespace=Not_A_Namespace", headers=bearer("reader-token"))
    assert bad.status_code == 422
    assert bad.json()["error"]


def test_whoami_for_loopback_and_without_a_door(fake: FakeApiServer) -> None:
    trusted = app_with(api_server=fake.url, auth_mode="kubernetes", trust_loopback=True)
    with TestClient(trusted, raise_server_exceptions=False, client=("127.0.0.1", 40000)) as local:
        me = local.get("/v1/whoami?namespace=shop").json()
    assert me["via"] == "loopback"
    assert (me["read"], me["read_logs"], me["heal"]) == (True, False, False)
    assert me["namespace_access"] == {"namespace": "shop", "read_logs": False, "kill": False}
    with TestClient(
        app_with(auth_mode="none"), raise_server_exceptions=False, client=REMOTE
    ) as anyone:
        me = anyone.get("/v1/whoami?namespace=shop").json()
    assert me["via"] == "unchecked"
    assert (me["read"], me["read_logs"], me["heal"]) == (True, True, True)
