"""What a compromised agent could do on its node: no SYS_PTRACE unless asked, an AppArmor profile.

SYS_PTRACE only lets the agent read which namespaces a container shares
with its pause process; it is opt-in (``components/ptrace``), and without
it the pod detail says why the sharing is not shown. The AppArmor profile
``daemonset/apparmor/podlens.profile`` denies writes through
``/proc/<pid>/{root,mem,environ}`` (daemonset/SECURITY.md, M6).
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from agent.api.app import create_app
from tests.still_node import StillContainer, StillPods, still_node, still_pod, still_settings
from tests.test_manifests import DEPLOY, Doc, agent_container, kustomize, render_base

ROOT = Path(__file__).resolve().parent.parent
PROFILE = DEPLOY / "apparmor" / "podlens.profile"
PTRACE = DEPLOY / "components" / "ptrace"


def render_with(*components: str) -> list[Doc]:
    k = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    k["components"] = list(components)
    return kustomize(DEPLOY, k)


# --------------------------------------------------------------- the manifests


def test_the_base_adds_no_capability() -> None:
    sc = agent_container(render_base())["securityContext"]
    assert sc["capabilities"] == {"drop": ["ALL"], "add": []}


def test_sys_ptrace_comes_only_with_its_component() -> None:
    base = render_base()
    with_ptrace = render_with("components/ptrace")
    expected = copy.deepcopy(base)
    agent_container(expected)["securityContext"]["capabilities"]["add"].append("SYS_PTRACE")
    assert with_ptrace == expected
    both = render_with("components/kill-and-watch", "components/ptrace")
    caps = agent_container(both)["securityContext"]["capabilities"]
    assert caps == {"drop": ["ALL"], "add": ["KILL", "SYS_PTRACE"]}


def test_the_daemonset_points_at_the_apparmor_profile() -> None:
    text = (DEPLOY / "daemonset.yaml").read_text()
    # Commented out: the profile must be loaded on the nodes first.
    assert "# container.apparmor.security.beta.kubernetes.io/agent: localhost/podlens" in text
    assert "#   localhostProfile: podlens" in text
    assert "apparmor/podlens.profile" in text


def _rules(text: str) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line]


def test_the_profile_denies_writes_through_proc_root_mem_and_environ() -> None:
    rules = _rules(PROFILE.read_text())
    assert "profile podlens flags=(attach_disconnected,mediate_deleted) {" in rules
    denied_writes = [
        r for r in rules if r.startswith("deny @{PROC}/") and re.search(r"\bw\w*,$", r)
    ]
    for target in ("root", "mem", "environ"):
        assert any(target in r for r in denied_writes), target
    assert "deny ptrace (trace)," in rules
    assert "signal (send) set=(kill, term)," in rules
    for never in ("deny mount,", "deny umount,", "deny pivot_root,"):
        assert never in rules
    # Writes are allowed in the two writable mounts only.
    writable = [r for r in rules if not r.startswith("deny") and re.search(r" r?wk?l?,$", r)]
    assert all(
        r.startswith(("/tmp/", "/var/log/podlens/", "/run/", "/var/snap/")) for r in writable
    )


def test_the_profile_parses() -> None:
    parser = shutil.which("apparmor_parser")
    if parser is None:
        if os.environ.get("CI"):
            pytest.fail("apparmor_parser is missing (apt-get install apparmor)", pytrace=False)
        pytest.skip("apparmor_parser is missing (apt-get install apparmor)")
    done = subprocess.run(
        [parser, "--skip-kernel-load", "--skip-cache", "-Q", str(PROFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


# ----------------------------------------------- the pod detail without ptrace


@pytest.fixture
def two_processes() -> Iterator[tuple[int, int]]:
    """A stand-in pause process and a container process."""
    children = [subprocess.Popen(["sleep", "600"]) for _ in range(2)]
    try:
        yield children[0].pid, children[1].pid
    finally:
        for child in children:
            child.kill()
            child.wait()


DETAIL = """
import json, sys
from fastapi.testclient import TestClient
from agent.api.app import create_app
from tests.still_node import StillContainer, StillPods, still_node, still_pod, still_settings

pause, app = int(sys.argv[1]), int(sys.argv[2])
pod = still_pod("web", [StillContainer("app", pid=app)], pause_pid=pause)
cfg = still_settings()
with TestClient(create_app(cfg, still_node(cfg, [pod]), StillPods([pod.api]))) as client:
    print(json.dumps(client.get("/v1/pods/shop/web").json()))
"""


def detail_without_capabilities(pause: int, app: int) -> dict[str, Any]:
    """The pod detail as an agent without any capability sees it (as the base DaemonSet runs)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        if os.environ.get("CI"):
            pytest.fail("needs root and setpriv (util-linux)", pytrace=False)
        pytest.skip("needs root and setpriv (util-linux)")
    done = subprocess.run(
        [
            "setpriv",
            "--bounding-set=-all",
            "--inh-caps=-all",
            "--ambient-caps=-all",
            "--",
            sys.executable,
            "-c",
            DETAIL,
            str(pause),
            str(app),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    detail: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return detail


def test_without_sys_ptrace_the_detail_says_why_sharing_is_not_shown(
    two_processes: tuple[int, int],
) -> None:
    pause, app = two_processes
    detail = detail_without_capabilities(pause, app)
    assert detail["pause_shares_with_host"] is None
    (container,) = detail["containers"]
    assert container["shares_with_pause"] is None
    note = detail["namespace_sharing_unknown"]
    assert "CAP_SYS_PTRACE" in note
    assert "components/ptrace" in note


def test_with_sys_ptrace_sharing_is_shown_and_no_reason_given(
    two_processes: tuple[int, int],
) -> None:
    pause, app = two_processes
    pod = still_pod("web", [StillContainer("app", pid=app)], pause_pid=pause)
    cfg = still_settings()
    with TestClient(create_app(cfg, still_node(cfg, [pod]), StillPods([pod.api]))) as client:
        detail = client.get("/v1/pods/shop/web").json()
    (container,) = detail["containers"]
    # Two processes of the node's own namespaces: each shares all with the other.
    assert container["shares_with_pause"]["net"] is True
    assert "net" in detail["pause_shares_with_host"]
    assert detail["namespace_sharing_unknown"] is None
