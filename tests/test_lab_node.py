"""The lab node end to end: `up`, exercises through the lab kubelet, `down`.

Commands run as a person runs them (``python -m lab.node ...`` in a
subprocess), so exit codes, messages and the detached processes are the
real ones. One lab serves the module; the last test takes it down and
brings it up again from another directory.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from lab import node as lab_node
from lab.exercises import get as exercise
from lab.node import LabNode, LabState
from tests.conftest import lab_unavailable

pytestmark = pytest.mark.containerd

REPO = Path(__file__).resolve().parent.parent
# Multiplies every kubelet duration: the first back-off of 10 s takes 0.5 s.
TIME_SCALE = 0.05

UNSUPPORTED = """\
apiVersion: v1
kind: Pod
metadata:
  name: with-configmap
spec:
  containers:
  - name: app
    image: busybox
    command: ["sleep", "3600"]
    volumeMounts:
    - name: config
      mountPath: /config
  volumes:
  - name: config
    configMap:
      name: app-config
"""

PLAIN = """\
apiVersion: v1
kind: Pod
metadata:
  name: plain-sleeper
spec:
  containers:
  - name: app
    image: busybox
    command: ["sleep", "3600"]
"""

FETCH = (
    "import urllib.request\n"
    "r = urllib.request.urlopen('http://localhost:80/', timeout=5)\n"
    "print(r.status); print(r.read().decode())\n"
)


def run_cli(
    *args: str,
    lab_dir: Path,
    stdin: str | None = None,
    cwd: Path | None = None,
    timeout: float = 240,
) -> subprocess.CompletedProcess[str]:
    """``python -m lab ARGS --dir LAB_DIR``, as a person runs it."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (
        os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
    )
    return subprocess.run(
        [sys.executable, "-m", "lab", *args, "--dir", str(lab_dir)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or REPO,
        env=env,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def up_args(port: int) -> list[str]:
    args = ["up", "--port", str(port), "--time-scale", str(TIME_SCALE)]
    cache = os.environ.get("PODLENS_IMAGE_CACHE")
    return [*args, "--image-cache", cache] if cache else args


def runtime_problem() -> str | None:
    if os.geteuid() != 0:
        return "not root (the lab starts containerd, runc and a bridge)"
    for tool, package in (
        ("containerd", "containerd"),
        ("runc", "runc"),
        ("nsenter", "util-linux"),
    ):
        if shutil.which(tool) is None:
            return f"{tool} not installed (apt-get install -y {package})"
    if not Path("/usr/sbin/nginx").is_file():
        return "nginx not installed (apt-get install -y nginx)"
    return None


def get_json(url: str) -> Any:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def wait_for(what: str, predicate: Callable[[], bool], timeout: float = 15.0) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(0.05)
    return time.monotonic() - start


def no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stdout, proc.stdout


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabNode]:
    problem = runtime_problem()
    if problem:
        lab_unavailable(problem)
    lab_dir = tmp_path_factory.mktemp("node")
    node = LabNode(lab_dir)
    proc = run_cli(*up_args(free_port()), lab_dir=lab_dir)
    try:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "lab up in" in proc.stdout
        yield node
    finally:
        if node.load_state() is not None:
            down = run_cli("down", lab_dir=lab_dir)
            assert down.returncode == 0, down.stderr


@pytest.fixture
def applied(lab: LabNode) -> Iterator[Callable[[str], str]]:
    """Applies an exercise by name through the CLI; deletes its pod afterwards."""
    made: list[str] = []

    def apply(name: str) -> str:
        proc = run_cli("apply", "-f", str(exercise(name).path), lab_dir=lab.lab_dir)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == f"pod/{name} created"
        made.append(name)
        return name

    yield apply
    for name in made:
        run_cli("delete", name, lab_dir=lab.lab_dir)


def agent_url(lab: LabNode) -> str:
    state = lab.load_state()
    assert state is not None
    return state.agent_url


# ------------------------------------------------------------------ up and status


def test_status_names_endpoints_and_live_components(lab: LabNode) -> None:
    proc = run_cli("status", lab_dir=lab.lab_dir)
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)

    assert status["node_name"] == "lab-node"
    assert status["agent_url"].startswith("http://127.0.0.1:")
    assert status["api_server_url"].startswith("http://127.0.0.1:")
    assert status["cri_endpoint"] == f"unix://{lab.lab_dir}/containerd/containerd.sock"
    assert set(status["components"]) == {"containerd", "apiserver", "kubelet", "agent"}
    assert all(c["running"] for c in status["components"].values())
    assert status["healthy"] is True
    # The agent serves what the status says, for the node the lab runs.
    node = get_json(status["agent_url"] + "/v1/node")
    assert node["node_name"] == "lab-node"
    assert get_json(status["api_server_url"] + "/version")["major"] == "1"


def test_state_file_names_each_process_by_pid_and_start(lab: LabNode) -> None:
    state = lab.load_state()
    assert state is not None
    for name, component in state.components.items():
        stat = Path(f"/proc/{component.pid}/stat").read_bytes()
        fields = stat[stat.rfind(b")") + 2 :].split()
        assert int(fields[19]) == component.start_ticks, name
        # Detached: its own session, not the command's that started it.
        assert os.getsid(component.pid) == component.pid, name


def test_up_twice_says_already_up(lab: LabNode) -> None:
    proc = run_cli("up", "--port", str(free_port()), lab_dir=lab.lab_dir)

    assert proc.returncode == 0
    assert "already up" in proc.stderr
    assert json.loads(proc.stdout)["agent_url"] == agent_url(lab)


# ------------------------------------------------------------------ exercises


def test_nginx_with_sidecar_runs_serves_and_sidecar_sees_the_request(
    lab: LabNode, applied: Callable[[str], str]
) -> None:
    start = time.monotonic()
    applied("nginx-with-sidecar")
    lab.wait_for_status("nginx-with-sidecar", "Running", "2/2", timeout=10)
    assert time.monotonic() - start < 10

    url = agent_url(lab)

    def ready_sandboxes() -> list[dict[str, Any]]:
        items = get_json(f"{url}/v1/sandboxes?pod=nginx-with-sidecar")["items"]
        return [s for s in items if s["state"] == "ready"]

    # The agent relists the runtime every second; the kubelet may be ahead of it.
    wait_for("the agent seeing the sandbox", lambda: bool(ready_sandboxes()), timeout=10)
    ready = ready_sandboxes()
    assert len(ready) == 1
    pause_pid = ready[0]["pause_pid"]
    fetch = [
        "nsenter",
        f"--net=/proc/{pause_pid}/ns/net",
        sys.executable,
        "-c",
        FETCH,
    ]

    def serves() -> bool:
        return subprocess.run(fetch, capture_output=True, timeout=20, check=False).returncode == 0

    wait_for("nginx answering on the pod's localhost:80", serves, timeout=10)
    out = subprocess.run(fetch, capture_output=True, text=True, timeout=20, check=True).stdout
    assert out.splitlines()[0] == "200"
    assert "Welcome to nginx!" in out

    def running_sidecars() -> list[dict[str, Any]]:
        items = get_json(f"{url}/v1/containers?pod=nginx-with-sidecar&name=sidecar")["items"]
        return [c for c in items if c["state"] == "running" and c["pid"]]

    wait_for("the agent seeing the sidecar run", lambda: bool(running_sidecars()), timeout=10)
    running = running_sidecars()
    assert len(running) == 1
    log_path = Path(running[0]["log_path"])

    def logged() -> bool:
        return log_path.exists() and '"GET / HTTP/1.1" 200' in log_path.read_text()

    wait_for("the access line in the sidecar's log", logged, timeout=10)
    line = next(x for x in log_path.read_text().splitlines() if "GET / HTTP/1.1" in x)
    # A CRI log line: the sidecar printed nginx's access log line on stdout.
    assert " stdout F " in line
    assert "Python-urllib" in line


def test_init_demo_stays_at_init_0_of_2(lab: LabNode, applied: Callable[[str], str]) -> None:
    applied("init-demo")
    lab.wait_for_status("init-demo", "Init:0/2", "0/1", timeout=15)

    time.sleep(3)

    rows = {r.name: r for r in lab.pods()}
    assert rows["init-demo"].status == "Init:0/2"
    assert rows["init-demo"].ready == "0/1"
    assert rows["init-demo"].restarts == "0"
    url = agent_url(lab)
    mains = get_json(f"{url}/v1/containers?pod=init-demo&name=main")["items"]
    assert mains == [], "the app container must not exist while an init container blocks"
    waits = get_json(f"{url}/v1/containers?pod=init-demo&name=init-wait")["items"]
    assert [c["state"] for c in waits] == ["running"]


def test_crashloop_demo_reaches_crashloopbackoff(
    lab: LabNode, applied: Callable[[str], str]
) -> None:
    applied("crashloop-demo")

    row = lab.wait_for_status("crashloop-demo", "CrashLoopBackOff", "0/1", timeout=30)

    assert row.restarts != "0"
    pod = lab.pod("crashloop-demo")
    assert pod is not None
    status = pod["status"]["containerStatuses"][0]
    assert status["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert status["lastState"]["terminated"]["exitCode"] == 1


# ------------------------------------------------------------------ apply, delete


def test_apply_from_stdin_and_delete(lab: LabNode) -> None:
    created = run_cli("apply", "-f", "-", stdin=PLAIN, lab_dir=lab.lab_dir)
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == "pod/plain-sleeper created"
    again = run_cli("apply", "-f", "-", stdin=PLAIN, lab_dir=lab.lab_dir)
    assert again.stdout.strip() == "pod/plain-sleeper unchanged"
    lab.wait_for_status("plain-sleeper", "Running", "1/1", timeout=10)
    pod = lab.pod("plain-sleeper")
    assert pod is not None
    assert pod["spec"]["nodeName"] == "lab-node"

    deleted = run_cli("delete", "plain-sleeper", lab_dir=lab.lab_dir)

    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.strip() == 'pod "plain-sleeper" deleted'
    assert lab.pod("plain-sleeper") is None
    url = agent_url(lab)

    def stopped() -> bool:
        items = get_json(f"{url}/v1/containers?pod=plain-sleeper")["items"]
        return all(c["state"] != "running" for c in items)

    wait_for("the kubelet stopping the deleted pod's containers", stopped, timeout=15)
    missing = run_cli("delete", "plain-sleeper", lab_dir=lab.lab_dir)
    assert missing.returncode == 1
    assert 'pods "plain-sleeper" not found' in missing.stderr
    no_traceback(missing)


def test_unsupported_manifest_is_refused_and_nothing_is_created(lab: LabNode) -> None:
    both = PLAIN + "---\n" + UNSUPPORTED

    proc = run_cli("apply", "-f", "-", stdin=both, lab_dir=lab.lab_dir)

    assert proc.returncode == 1
    assert "pod/with-configmap" in proc.stderr
    assert "spec.volumes[0].configMap" in proc.stderr
    assert "nothing was created" in proc.stderr
    no_traceback(proc)
    assert lab.pod("plain-sleeper") is None
    assert lab.pod("with-configmap") is None


def test_a_v1_list_applies_every_pod(lab: LabNode) -> None:
    import yaml

    items = [yaml.safe_load(PLAIN)]
    second = yaml.safe_load(PLAIN)
    second["metadata"]["name"] = "plain-second"
    items.append(second)
    listing = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    try:
        proc = run_cli("apply", "-f", "-", "-n", "lab-ns", stdin=listing, lab_dir=lab.lab_dir)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split("\n")[:2] == [
            "pod/plain-sleeper created",
            "pod/plain-second created",
        ]
        assert lab.pod("plain-sleeper", "lab-ns") is not None
        assert lab.pod("plain-second", "lab-ns") is not None
    finally:
        for name in ("plain-sleeper", "plain-second"):
            run_cli("delete", name, "-n", "lab-ns", lab_dir=lab.lab_dir)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kind: Pod\nmetadata: {name: x\n", "not valid YAML at line"),
        ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n", "Pods only"),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: Bad_Name}\nspec: {containers: []}\n",
            "not a lowercase DNS-1123 subdomain",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: noimage}\nspec:\n  containers:\n"
            "  - name: app\n",
            "spec.containers[0].image is missing",
        ),
        ("", "no Pod in it"),
    ],
    ids=["bad-yaml", "deployment", "bad-name", "no-image", "empty"],
)
def test_bad_manifests_get_a_clear_refusal(lab: LabNode, text: str, expected: str) -> None:
    proc = run_cli("apply", "-f", "-", stdin=text, lab_dir=lab.lab_dir)

    assert proc.returncode == 1
    assert expected in proc.stderr
    no_traceback(proc)


def test_apply_of_a_missing_file_is_refused(lab: LabNode, tmp_path: Path) -> None:
    proc = run_cli("apply", "-f", str(tmp_path / "nope.yaml"), lab_dir=lab.lab_dir)

    assert proc.returncode == 1
    assert "no such file" in proc.stderr
    no_traceback(proc)


def test_restart_is_for_the_real_node_and_names_what_it_restarts(lab: LabNode) -> None:
    refused = run_cli("restart", "kubelet", lab_dir=lab.lab_dir)
    assert refused.returncode == 1
    assert "for the real node (lab up --real)" in refused.stderr
    no_traceback(refused)
    unknown = run_cli("restart", "etcd", lab_dir=lab.lab_dir)
    assert unknown.returncode == 2
    assert "invalid choice: 'etcd'" in unknown.stderr
    assert lab.status()["components"]["kubelet"]["running"]


# ------------------------------------------------------------------ when it cannot


@pytest.mark.parametrize(
    "args",
    [["status"], ["apply", "-f", "-"], ["delete", "x"], ["restart", "kubelet"]],
    ids=["status", "apply", "delete", "restart"],
)
def test_commands_need_the_lab_up(tmp_path: Path, args: list[str]) -> None:
    proc = run_cli(*args, stdin=PLAIN, lab_dir=tmp_path / "never-up")

    assert proc.returncode == 2
    assert "the lab is not up" in proc.stderr
    no_traceback(proc)
    assert not (tmp_path / "never-up").exists()


def test_up_on_a_port_in_use_says_so_and_leaves_nothing(lab: LabNode, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_cli("up", "--port", str(port), lab_dir=tmp_path / "busy")

    assert proc.returncode == 2
    assert f"port {port} on 127.0.0.1 is in use" in proc.stderr
    no_traceback(proc)
    assert not (tmp_path / "busy").exists()


def test_up_names_a_missing_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_which = shutil.which
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(
        "lab.images.shutil.which", lambda name: None if name == "runc" else real_which(name)
    )

    code = lab_node.main(["up", "--dir", str(tmp_path / "lab"), "--port", str(free_port())])

    assert code == 2
    assert "apt-get install -y runc" in capsys.readouterr().err
    assert not (tmp_path / "lab").exists()


def test_up_refuses_without_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)

    code = lab_node.main(["up", "--dir", str(tmp_path / "lab")])

    assert code == 2
    assert "needs root" in capsys.readouterr().err
    assert not (tmp_path / "lab").exists()


# ------------------------------------------------------------------ down


def test_down_leaves_nothing_and_up_works_again_from_elsewhere(
    lab: LabNode, applied: Callable[[str], str], tmp_path: Path
) -> None:
    applied("sidecar-demo")
    lab.wait_for_status("sidecar-demo", "Running", "2/2", timeout=15)
    state = lab.load_state()
    assert state is not None
    pids = [c.pid for c in state.components.values()]
    url = agent_url(lab)

    def pod_pids() -> list[int]:
        items = get_json(f"{url}/v1/containers")["items"]
        return [c["pid"] for c in items if c["state"] == "running" and c["pid"]]

    wait_for("the agent seeing both containers", lambda: len(pod_pids()) >= 2, timeout=10)
    running = pod_pids()

    proc = run_cli("down", lab_dir=lab.lab_dir)

    assert proc.returncode == 0, proc.stderr
    assert_nothing_left(lab, state, pids + running)
    again = run_cli("down", lab_dir=lab.lab_dir)
    assert again.returncode == 0
    assert "not up" in again.stderr

    # Again after down, started from another working directory.
    port = free_port()
    restarted = run_cli(*up_args(port), lab_dir=lab.lab_dir, cwd=tmp_path)
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    status = lab.status()
    assert status["healthy"] is True
    assert status["agent_url"] == f"http://127.0.0.1:{port}"
    assert status["pods"] == []
    second = lab.load_state()
    assert second is not None
    final = run_cli("down", lab_dir=lab.lab_dir)
    assert final.returncode == 0, final.stderr
    assert_nothing_left(lab, second, [c.pid for c in second.components.values()])


def assert_nothing_left(lab: LabNode, state: LabState, pids: list[int]) -> None:
    left = lab.leftovers(state)
    assert left == {
        "processes": [],
        "mounts": [],
        "bridge": [],
        "files": [],
        "components": [],
        "lab_dir": [],
    }
    for pid in pids:
        wait_for(f"process {pid} gone", partial(_gone, pid), timeout=5)
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    assert state.bridge not in links.stdout
    assert not lab.lab_dir.exists()


def _gone(pid: int) -> bool:
    return not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :].split()[0] not in (b"Z", b"X")
