"""`python -m lab up --runtime containerd2|crio`: the lab node on the upstream runtimes.

Commands run as a person runs them (``python -m lab ...`` in a subprocess):
up, an exercise through the lab kubelet, status naming the runtime and its
daemon, the agent seeing the runtime, down leaving nothing behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from lab.errors import LabError
from lab.node import LabNode, LabState, RequestRefused, build_parser
from lab.runtimes import FACTS, runtime_problem
from tests._lab_stack import free_port
from tests.conftest import lab_unavailable

REPO = Path(__file__).resolve().parent.parent


def test_up_takes_the_runtime_and_refuses_what_it_cannot_run() -> None:
    args = build_parser().parse_args(["up", "--runtime", "crio", "--crio-infra"])
    assert (args.runtime, args.crio_infra) == ("crio", True)
    assert build_parser().parse_args(["up"]).runtime is None
    with pytest.raises(SystemExit):
        build_parser().parse_args(["up", "--runtime", "docker"])
    walk = build_parser().parse_args(["walkthrough", "--runtime", "containerd2"])
    assert walk.runtime == "containerd2"
    with pytest.raises(RequestRefused, match="unknown runtime"):
        LabNode("/nonexistent", runtime="rkt")


@pytest.mark.parametrize(
    ("runtime", "named", "flag"),
    [
        ("containerd", "containerd 1.6", ""),
        ("containerd2", "containerd 2.x", " --runtime containerd2"),
        ("crio", "CRI-O", " --runtime crio"),
    ],
)
def test_walkthrough_names_the_runtime_it_brings_up(
    runtime: str,
    named: str,
    flag: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    from lab import walkthrough

    def stop_before_starting(self: LabNode) -> None:
        raise LabError("stopped before anything starts")

    monkeypatch.setenv("PODLENS_LAB_RUNTIME", runtime)
    monkeypatch.setenv("PODLENS_LAB_DIR", str(tmp_path / "lab"))
    monkeypatch.setattr(LabNode, "up", stop_before_starting)
    with pytest.raises(LabError, match="stopped before"):
        walkthrough.run(port=18470)
    heading, command = capsys.readouterr().out.strip().splitlines()[:2]
    assert f"images, {named}, an API server" in heading
    assert command == f"$ python -m lab up --port 18470{flag}"


def test_the_state_file_names_the_runtime() -> None:
    state = LabState(
        lab_dir="/l",
        node_name="n",
        port=1,
        containerd_token="abcdef",
        containerd_dir="/l/crio",
        cri_endpoint="unix:///l/crio/crio.sock",
        started_at="2026-01-01T00:00:00Z",
        runtime="crio",
    )
    assert LabState.from_json(state.to_json()).runtime == "crio"
    older = state.to_json()
    del older["runtime"]
    assert LabState.from_json(older).runtime == "containerd"


def cli(*args: str, lab_dir: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PODLENS_LAB_DIR=str(lab_dir))
    env["PYTHONPATH"] = str(REPO) + (
        os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
    )
    return subprocess.run(
        [sys.executable, "-m", "lab", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.containerd
@pytest.mark.parametrize("runtime", ["containerd2", "crio"])
def test_up_apply_status_down_on_the_upstream_runtime(runtime: str, tmp_path: Path) -> None:
    problem = runtime_problem(runtime)
    if problem:
        lab_unavailable(f"{runtime}: {problem}")
    lab_dir = tmp_path / "lab"
    port = free_port()
    up = cli(
        "up", "--runtime", runtime, "--port", str(port), "--time-scale", "0.05", lab_dir=lab_dir
    )
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"{runtime}: unix://{lab_dir}/{runtime}/" in up.stdout
        applied = cli("apply", "-f", str(REPO / "lab/exercises/sidecar-pod.yaml"), lab_dir=lab_dir)
        assert applied.returncode == 0, applied.stderr

        def status() -> dict[str, Any]:
            found: dict[str, Any] = json.loads(cli("status", lab_dir=lab_dir).stdout)
            return found

        deadline = time.monotonic() + 60
        now = status()
        while not any(p["status"] == "Running" for p in now["pods"]):
            assert time.monotonic() < deadline, now
            time.sleep(0.5)
            now = status()
        assert now["runtime"] == runtime
        assert now["healthy"] is True
        daemon = "crio" if runtime == "crio" else "containerd"
        assert set(now["components"]) == {"agent", "kubelet", "apiserver", daemon}

        node = httpx.get(f"{now['agent_url']}/v1/node", timeout=10).json()
        assert node["runtime"]["name"] == FACTS[runtime].runtime_name
        pods = httpx.get(f"{now['agent_url']}/v1/pods", timeout=10).json()["items"]
        (pod,) = [p for p in pods if p["name"] == "sidecar-pod"]
        assert all(c["pid"] for c in pod["containers"])
    finally:
        down = cli("down", lab_dir=lab_dir)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not lab_dir.exists()
    with pytest.raises(LabError):
        LabNode(lab_dir).require_state()
