"""The web UI in a real browser: Debian's headless Chromium driven by Playwright, against the lab.

The lab: containerd, the lab's API server (answering TokenReviews and
SubjectAccessReviews) and kubelet, and the agent as a subprocess checking
tokens, with kill-and-watch on in namespace ``ui``. One browser for the
module, a fresh context (a fresh tab and its sessionStorage) per user.

What is checked: the pages load and their tables equal the API's answers, a
kill-and-watch started from the page draws its phases while the run is still
running, markup in an event message or a log line stays text, a read-only
user never sees the kill controls, the keyboard reaches everything, and the
layouts at 1280 px and at phone width (390 px) do not overflow sideways.
Screenshots go to ``$PODLENS_UI_ARTIFACTS`` (or a directory under pytest's
temporary directory, printed), never into the checkout.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.containerd import PrivateContainerd
from tests._lab_stack import BUSYBOX, SLEEP, AgentProcess, LabStack, wait_for
from tests.conftest import lab_unavailable

pytestmark = pytest.mark.containerd

CHROMIUM = "/usr/bin/chromium"
NODE = "ui-node"
NS = "ui"
OTHER = "other"
OPERATOR = "system:serviceaccount:ops:operator"
VIEWER = "system:serviceaccount:ops:viewer"
TOKENS = {
    "operator-token": {"username": OPERATOR, "uid": "uid-op", "audiences": ["podlens"]},
    "viewer-token": {"username": VIEWER, "uid": "uid-viewer", "audiences": ["podlens"]},
}
# (user, verb, resource, subresource, namespace), as RBAC would grant them.
GRANTS = {
    (OPERATOR, "get", "nodes", "podlens", "*"),
    (OPERATOR, "get", "nodes", "podlens-logs", "*"),
    (OPERATOR, "create", "nodes", "podlens-heal", "*"),
    (OPERATOR, "get", "pods", "log", "*"),
    (OPERATOR, "delete", "pods", "", NS),
    (VIEWER, "get", "nodes", "podlens", "*"),
}
# What a crafted event message and log line hold: markup that would run script.
XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'
CRASH = ["sh", "-c", f"echo '{XSS}'; sleep 0.2; exit 3"]
# Ready two seconds after each start, so a run's last phase comes well after the kill.
SLOW_READY = ["sh", "-c", "trap 'exit 0' TERM; (sleep 2; touch /tmp/ready) & sleep 3600 & wait"]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


def _playwright_problem() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} missing (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    return None


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("PODLENS_UI_ARTIFACTS")
    path = Path(configured) if configured else tmp_path_factory.mktemp("ui-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    print(f"UI screenshots: {path}")
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    problem = _playwright_problem()
    if problem:
        lab_unavailable(problem)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        # --no-sandbox: Chromium's sandbox refuses to run as root, which the lab needs.
        instance = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture(scope="module")
def stack(
    containerd: PrivateContainerd, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LabStack]:
    lab = LabStack(containerd.endpoint, tmp_path_factory.mktemp("ui-lab"), NODE)
    lab.api.set_tokens(TOKENS)
    lab.api.set_authorizer(GRANTS)
    lab.start()
    try:
        web = [
            {"name": "app", "image": BUSYBOX, "command": SLEEP,
             "volumeMounts": [{"name": "shared", "mountPath": "/data"}]},
            {"name": "sidecar", "image": BUSYBOX, "command": SLEEP,
             "volumeMounts": [{"name": "shared", "mountPath": "/in", "readOnly": True}]},
        ]  # fmt: skip
        lab.create_pod(
            NS,
            "web",
            web,
            initContainers=[{"name": "prepare", "image": BUSYBOX, "command": ["true"]}],
            volumes=[{"name": "shared", "emptyDir": {}}],
        )
        lab.create_pod(NS, "steady")
        ready_probe = {"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 1}
        lab.create_pod(
            NS,
            "slowready",
            [
                {
                    "name": "app",
                    "image": BUSYBOX,
                    "command": SLOW_READY,
                    "readinessProbe": ready_probe,
                }
            ],
        )
        crashy = lab.create_pod(NS, "crashy", [{"name": "app", "image": BUSYBOX, "command": CRASH}])
        lab.api.add(
            "event",
            {
                "metadata": {"name": "crashy.crafted", "namespace": NS},
                "involvedObject": {
                    "kind": "Pod",
                    "namespace": NS,
                    "name": "crashy",
                    "uid": crashy["metadata"]["uid"],
                    "apiVersion": "v1",
                },
                "reason": "Crafted",
                "message": XSS,
                "type": "Warning",
                "count": 1,
                "source": {"component": "someone"},
            },
        )
        lab.create_pod(OTHER, "quiet")
        yield lab
    finally:
        lab.close()


@pytest.fixture(scope="module")
def agent(
    containerd: PrivateContainerd, stack: LabStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AgentProcess]:
    workdir = tmp_path_factory.mktemp("ui-agent")
    proc = AgentProcess(
        cri_endpoint=containerd.endpoint,
        api_server=stack.api_url,
        node_name=NODE,
        log_path=workdir / "agent.log",
        enable_kill=True,
        kill_namespaces=(NS,),
        audit_log=workdir / "audit.jsonl",
        token="operator-token",
        log_roots=(stack.root / "kubelet" / "log" / "pods",),
    )
    try:
        proc.start()
        proc.wait_ready()
        for namespace, name, ready in (
            (NS, "web", "2/2"),
            (NS, "steady", "1/1"),
            (NS, "slowready", "1/1"),
            (OTHER, "quiet", "1/1"),
        ):
            wait_for(functools.partial(running, proc, namespace, name, ready), name, 60)
        wait_for(lambda: restarted(proc), "crashy restarted", 60)
        yield proc
    finally:
        proc.stop()


def running(agent: AgentProcess, namespace: str, name: str, ready: str) -> bool:
    r = agent.get(f"/v1/pods/{namespace}/{name}")
    if r.status_code != 200:
        return False
    body = r.json()
    return bool(
        body["status"] == "Running"
        and body["ready"] == ready
        and all(c["pid"] for c in body["containers"] if c["role"] != "init")
    )


def restarted(agent: AgentProcess) -> bool:
    r = agent.get(f"/v1/pods/{NS}/crashy")
    return r.status_code == 200 and r.json()["containers"][0]["restart_count"] >= 1


def as_json(agent: AgentProcess, path: str, token: str = "operator-token") -> Any:
    r = agent.get(path, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, (path, r.text)
    return r.json()


class Tab:
    """A browser tab signed in as one user, at one viewport size."""

    def __init__(
        self, browser: Any, agent: AgentProcess, artifacts: Path, token: str, viewport: Any
    ) -> None:
        self.context = browser.new_context(viewport=viewport)
        self.page = self.context.new_page()
        self.page.set_default_timeout(15_000)
        self.agent = agent
        self.artifacts = artifacts
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        # A browser asks / for text/html and is sent to the UI.
        response = self.page.goto(agent.url + "/")
        assert response is not None
        assert response.url == agent.url + "/ui/"
        self.page.fill("#token", token)
        self.page.press("#token", "Enter")
        self.page.wait_for_selector("main h1:has-text('Node')")

    def go(self, fragment: str, heading: str) -> None:
        self.page.evaluate("(hash) => { location.hash = hash; }", fragment)
        self.page.wait_for_selector(f"main h1:has-text('{heading}')")

    def shot(self, name: str) -> Path:
        path = self.artifacts / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def close(self) -> None:
        self.context.close()
        assert not self.errors, self.errors


@pytest.fixture
def operator(browser: Any, agent: AgentProcess, artifacts: Path) -> Iterator[Tab]:
    tab = Tab(browser, agent, artifacts, "operator-token", DESKTOP)
    yield tab
    tab.close()


@pytest.fixture
def viewer(browser: Any, agent: AgentProcess, artifacts: Path) -> Iterator[Tab]:
    tab = Tab(browser, agent, artifacts, "viewer-token", DESKTOP)
    yield tab
    tab.close()


def pod_rows(tab: Tab) -> list[list[str]]:
    rows: list[list[str]] = tab.page.eval_on_selector_all(
        "#pods tbody tr",
        "rows => rows.map(r => [...r.cells].map(c => c.textContent))",
    )
    return rows


# --------------------------------------------------------------------- the pages


def test_the_node_page_shows_the_apis_pods_problems_first(operator: Tab) -> None:
    agent = operator.agent

    def same() -> list[list[str]] | None:
        api = as_json(agent, "/v1/pods")["items"]
        rows = pod_rows(operator)
        expected = {
            (p["namespace"], p["name"], p["ready"], p["status"], p["restarts"]) for p in api
        }
        shown = {tuple(r[:5]) for r in rows}
        return rows if shown == expected and len(rows) == len(api) else None

    rows = wait_for(same, "the pod table equal to /v1/pods", 20, 0.5)
    api = {(p["namespace"], p["name"]): p for p in as_json(agent, "/v1/pods")["items"]}
    attention = [api[(r[0], r[1])]["needs_attention"] for r in rows]
    assert attention == sorted(attention, reverse=True), "problems first"
    assert attention[0] is True  # crashy
    node = as_json(agent, "/v1/node")
    cards = operator.page.inner_text("section.cards")
    assert node["runtime"]["version"] in cards
    assert node["capabilities"]["change_source"] in cards
    assert operator.page.inner_text("main h1") == f"Node {NODE}"
    operator.shot("node-1280")

    operator.page.fill("#pod-filter", "slowready")
    assert [r[1] for r in pod_rows(operator)] == ["slowready"]
    operator.page.fill("#pod-filter", "")
    operator.page.check("#problems-only")
    shown = {r[1] for r in pod_rows(operator)}
    problems = {p["name"] for p in as_json(agent, "/v1/pods?problems=true")["items"]}
    assert shown == problems
    assert "crashy" in shown


def test_the_token_is_kept_for_the_tab_only(operator: Tab, browser: Any) -> None:
    page = operator.page
    assert page.evaluate("sessionStorage.getItem('podlens.token')") == "operator-token"
    assert page.evaluate("localStorage.length") == 0
    assert page.evaluate("document.cookie") == ""
    assert "operator-token" not in page.url
    # Another tab starts signed out.
    other = browser.new_context()
    try:
        fresh = other.new_page()
        fresh.goto(operator.agent.url + "/ui/")
        fresh.wait_for_selector("#token")
    finally:
        other.close()


def test_the_pod_page_equals_the_api_and_draws_what_is_shared(operator: Tab) -> None:
    agent = operator.agent
    operator.go(f"#/pod/{NS}/web", f"Pod {NS}/web")
    page = operator.page
    page.wait_for_selector("#containers tbody tr")
    pod = as_json(agent, f"/v1/pods/{NS}/web")
    sandbox_rows = page.eval_on_selector_all(
        "#sandboxes tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
    )
    assert [r[3] for r in sandbox_rows] == [str(s["pause_pid"]) for s in pod["sandboxes"]]
    containers = page.eval_on_selector_all(
        "#containers tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
    )
    assert [(r[0], r[1], r[5]) for r in containers] == [
        (c["name"], c["role"], str(c["pid"]) if c["pid"] else "") for c in pod["containers"]
    ]
    # Drawn: the network namespace joins the pause process and both app containers.
    net = page.get_attribute("#sharing g[data-namespace='net']", "data-members")
    assert net is not None
    assert set(net.split()) >= {"pause", "app", "sidecar"}
    volume = page.get_attribute("#sharing g[data-volume='shared']", "data-members")
    assert volume is not None
    assert set(volume.split()) == {"app", "sidecar"}
    # A log tail per container, as the API answers it.
    page.click("#log-app")
    page.wait_for_selector("#log-text")
    logs = as_json(agent, f"/v1/pods/{NS}/web/logs?container=app&tail=200")
    assert page.text_content("#log-text") == "".join(line["text"] + "\n" for line in logs["lines"])
    assert page.is_visible("#kill")
    operator.shot("pod-1280")


def test_markup_in_events_and_logs_stays_text(operator: Tab) -> None:
    page = operator.page
    operator.go(f"#/pod/{NS}/crashy", f"Pod {NS}/crashy")
    page.wait_for_selector("#events td.message")
    messages = page.eval_on_selector_all(
        "#events td.message", "cells => cells.map(c => c.textContent)"
    )
    assert XSS in messages
    page.click("#prev-app")
    page.wait_for_selector("#log-text")
    assert XSS in (page.text_content("#log-text") or "")
    operator.go("#/findings", "Findings")
    page.wait_for_selector(f"article[data-pod='{NS}/crashy']")
    assert XSS in page.inner_text(f"article[data-pod='{NS}/crashy']")
    # Nothing of it became markup, and nothing ran.
    assert page.evaluate("window.__xss") is None
    assert page.eval_on_selector_all("main img, main script", "els => els.length") == 0
    operator.shot("crafted-markup")


def test_the_findings_page_equals_the_api_and_links_the_pods(operator: Tab) -> None:
    agent = operator.agent
    operator.go("#/findings", "Findings")
    page = operator.page

    def same() -> bool:
        api = {
            (f["rule"], f"{f['namespace']}/{f['pod']}")
            for f in as_json(agent, "/v1/diagnostics")["items"]
        }
        pairs = page.eval_on_selector_all(
            "#findings article", "els => els.map(e => [e.dataset.rule, e.dataset.pod])"
        )
        return {(rule, pod) for rule, pod in pairs} == api and bool(api)

    wait_for(same, "the findings equal /v1/diagnostics", 20, 0.5)
    crashy = page.locator(f"article[data-pod='{NS}/crashy']").first
    assert "Likely cause" in crashy.inner_text()
    crashy.locator("a.pod-link").click()
    page.wait_for_selector(f"main h1:has-text('Pod {NS}/crashy')")
    operator.go("#/findings", "Findings")
    operator.shot("findings-1280")


def test_a_reader_never_sees_the_kill_controls(viewer: Tab, operator: Tab) -> None:
    page = viewer.page
    viewer.go(f"#/pod/{NS}/steady", f"Pod {NS}/steady")
    page.wait_for_selector("#containers tbody tr")
    assert page.locator("#kill").count() == 0
    assert page.locator("#containers button").count() == 0  # no log buttons either
    viewer.go("#/heal", "Self-healing")
    page.wait_for_selector("#runs table")
    assert page.locator("#start *").count() == 0
    assert page.locator("#heal-pod").count() == 0
    viewer.go("#/findings", "Findings")
    assert "podlens-logs" in page.inner_text("#findings")
    viewer.shot("viewer-pod")
    # The operator may not delete pods in the other namespace: no controls there.
    operator.go(f"#/pod/{OTHER}/quiet", f"Pod {OTHER}/quiet")
    operator.page.wait_for_selector("#containers tbody tr")
    operator.page.wait_for_timeout(300)
    assert operator.page.locator("#kill").count() == 0


# Recorded in the page: when each phase mark appeared, and whether the run was
# still running then.
_WATCH_PHASES = """() => {
  window.__drawn = [];
  const seen = new Set();
  new MutationObserver(() => {
    for (const g of document.querySelectorAll('#compare figure g.phase')) {
      const name = g.dataset.phase;
      if (seen.has(name)) continue;
      seen.add(name);
      const state = g.closest('figure').dataset.state;
      window.__drawn.push({name, state, t: performance.now()});
    }
  }).observe(document.body, {subtree: true, childList: true, attributes: true});
}"""


def test_a_kill_started_from_the_page_draws_its_phases_as_they_happen(operator: Tab) -> None:
    agent = operator.agent
    page = operator.page
    operator.go(f"#/pod/{NS}/slowready", f"Pod {NS}/slowready")
    page.wait_for_selector("#kill-plan")
    page.select_option("#kill-target", "container:app")
    assert page.is_disabled("#kill-go"), "no kill before the plan is shown"
    page.click("#kill-plan")
    page.wait_for_selector("#plan-steps li")
    dry = agent.http.post(
        f"/v1/pods/{NS}/slowready/kill-and-watch", json={"container": "app", "dry_run": True}
    ).json()
    shown_steps = page.eval_on_selector_all("#plan-steps li", "els => els.map(e => e.textContent)")
    assert shown_steps == dry["plan"]["steps"]
    page.evaluate(_WATCH_PHASES)
    page.click("#kill-go")
    page.wait_for_function("() => location.hash.startsWith('#/heal/')")
    run_id = page.evaluate("location.hash").rsplit("/", 1)[1]
    figure = f"#run-{run_id}"
    page.wait_for_selector(f"{figure}[data-state='healed']", timeout=60_000)
    run = as_json(agent, f"/v1/heal/runs/{run_id}")
    assert run["state"] == "healed", run["verdict"]
    drawn = page.evaluate("window.__drawn")
    assert {d["name"] for d in drawn} == {p["name"] for p in run["phases"]}
    # Live: phases appeared while the run was running, over time, not at the end at once.
    live = [d for d in drawn if d["state"] == "running"]
    assert len(live) >= 2, drawn
    # Not one answer drawn at once: marks were added at different moments while it ran,
    # the restarted container's among them (readiness follows two seconds later).
    moments = sorted({round(d["t"] / 20) for d in live})
    assert len(moments) >= 2, drawn
    assert "api_running" in {d["name"] for d in live}, drawn
    assert drawn[-1]["t"] - drawn[0]["t"] > 1000, drawn  # readiness comes 2 s after the restart
    marks = page.eval_on_selector_all(f"{figure} g.phase", "els => els.map(e => e.dataset.phase)")
    assert marks == [p["name"] for p in run["phases"]]
    operator.shot("heal-run-1280")

    # A pause kill beside it: another pod's sandbox, through the API.
    second = agent.http.post(
        f"/v1/pods/{NS}/steady/kill-and-watch", json={"sandbox": True, "timeout_seconds": 60}
    )
    assert second.status_code == 202, second.text
    second_id = second.json()["id"]
    page.wait_for_selector(f"#pick-{second_id}")
    page.check(f"#pick-{second_id}")
    page.wait_for_selector(f"#run-{second_id}[data-state='healed']", timeout=60_000)
    first_box = page.locator(figure).bounding_box()
    second_box = page.locator(f"#run-{second_id}").bounding_box()
    assert first_box is not None
    assert second_box is not None
    assert first_box["y"] == second_box["y"], "side by side"
    sandbox_phases = page.eval_on_selector_all(
        f"#run-{second_id} g.phase", "els => els.map(e => e.dataset.phase)"
    )
    assert "runtime_new_sandbox" in sandbox_phases
    # The histogram of times to recover, from /metrics: a container run and a sandbox run.
    for kind in ("container", "sandbox"):
        page.wait_for_function(
            f"() => [...document.querySelectorAll('#histogram rect.bar-{kind}[data-count]')]"
            ".reduce((n, r) => n + Number(r.dataset.count), 0) >= 1",
            timeout=30_000,
        )
    operator.shot("heal-compare-1280")


def test_the_keyboard_reaches_every_page_and_pod(operator: Tab) -> None:
    page = operator.page
    operator.go("#/node", f"Node {NODE}")
    page.wait_for_selector("#pods tbody tr")
    # A new view puts the focus on its heading; back from there to the skip link.
    assert page.evaluate("document.activeElement.tagName") == "H1"
    for _ in range(5):
        page.keyboard.press("Shift+Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to the content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    assert page.evaluate("location.hash") == "#/node"
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("document.activeElement.textContent") == "Findings"
    page.keyboard.press("Enter")
    page.wait_for_selector("main h1:has-text('Findings')")
    assert page.evaluate("document.activeElement.tagName") == "H1"
    for _ in range(4):
        page.keyboard.press("Shift+Tab")
    assert page.evaluate("document.activeElement.textContent") == "Node"
    page.keyboard.press("Enter")
    page.wait_for_selector(f"main h1:has-text('Node {NODE}')")
    # To the filter, type, and on to the one pod left, all by Tab.
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "pod-filter":
            break
    page.keyboard.type("steady")
    page.wait_for_function("() => document.querySelectorAll('#pods tbody tr').length === 1")
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.classList.contains('pod-link')"):
            break
    assert page.evaluate("document.activeElement.textContent") == "steady"
    page.keyboard.press("Enter")
    page.wait_for_selector(f"main h1:has-text('Pod {NS}/steady')")
    # The focus survives the page's refresh of the table it is in.
    page.wait_for_selector("#log-c")
    page.focus("#log-c")
    page.wait_for_timeout(2500)
    assert page.evaluate("document.activeElement.id") == "log-c"
    page.keyboard.press("Enter")
    page.wait_for_selector("#log-text")


def test_phone_width_layouts_do_not_overflow(
    browser: Any, agent: AgentProcess, artifacts: Path
) -> None:
    tab = Tab(browser, agent, artifacts, "operator-token", PHONE)
    try:
        for fragment, heading, ready, name in (
            ("#/node", "Node", "#pods tbody tr", "node-390"),
            (f"#/pod/{NS}/web", f"Pod {NS}/web", "#containers tbody tr", "pod-390"),
            ("#/findings", "Findings", "#findings article", "findings-390"),
            ("#/heal", "Self-healing", "#runs table", "heal-390"),
        ):
            tab.go(fragment, heading)
            tab.page.wait_for_selector(ready)
            width = tab.page.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], (fragment, width)
            tab.shot(name)
    finally:
        tab.close()
