"""The agent's image, built from the project's Dockerfile, in a real containerd.

``lab.upstream.image`` builds it with buildah on a locally made stand-in for
the Dockerfile's base; the tests import the archive into the lab's private
containerd, check the name daemonset/ asks for is listed, and run the image
through CRI as a node would, with a read-only root filesystem. The first run
makes the stand-in and installs the dependencies (minutes); later runs are
served from the build cache under /var/cache/podlens.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
from pathlib import Path

import pytest
import yaml

from cri_proto import api_pb2
from lab.containerd import PrivateContainerd
from lab.cri_pods import ContainerDef, CriPodDriver, PodHandle, SecurityDef
from lab.errors import LabError, MissingTool, NotRoot
from lab.upstream.image import (
    BASE_IMAGE,
    AgentImage,
    build_agent_image,
    containerd_images,
    import_image,
    normalize_ref,
)
from tests.conftest import lab_unavailable

pytestmark = pytest.mark.containerd

ROOT = Path(__file__).resolve().parent.parent
# CRI log lines: "<time> <stream> <F|P> <text>".
CRI_LOG_LINE = re.compile(r"^\S+ (stdout|stderr) [FP] ?(.*)$")


@pytest.fixture(scope="module")
def agent_image() -> AgentImage:
    if os.geteuid() != 0:
        lab_unavailable("not root (debootstrap and buildah's rootful storage)")
    try:
        return build_agent_image()
    except (MissingTool, NotRoot) as exc:
        lab_unavailable(str(exc))
        raise
    except LabError as exc:
        pytest.fail(f"building the agent's image failed: {exc}", pytrace=False)


@pytest.fixture(scope="module")
def imported(agent_image: AgentImage, containerd: PrivateContainerd) -> list[str]:
    ctr = shutil.which("ctr")
    assert ctr is not None, "the containerd fixture checks for ctr"
    return import_image(ctr, containerd.address, agent_image.tar)


def run_to_exit(lab_pod, cri_driver: CriPodDriver, name: str, image: str, *argv: str):
    """Run ``argv`` in ``image`` as a node runs the agent; (exit code, stdout+stderr text)."""
    pod: PodHandle = lab_pod(
        name,
        containers=[
            ContainerDef(
                "agent",
                image,
                command=list(argv),
                # As daemonset/daemonset.yaml runs it.
                security=SecurityDef(readonly_rootfs=True, no_new_privs=True),
            )
        ],
    )
    status = cri_driver.wait_container_state(
        pod.container_id("agent"), api_pb2.CONTAINER_EXITED, timeout=60
    )
    lines = pod.containers["agent"].log_path.read_text().splitlines()
    text = "\n".join(m.group(2) for line in lines if (m := CRI_LOG_LINE.match(line)))
    return status.exit_code, text


def daemonset_image() -> str:
    """The image daemonset/ deploys: its container's image with the kustomization's tag."""
    manifest = yaml.safe_load((ROOT / "daemonset" / "daemonset.yaml").read_text())
    containers = manifest["spec"]["template"]["spec"]["containers"]
    name = next(c["image"] for c in containers if c["image"].split(":")[0] == "podlens")
    kustomization = yaml.safe_load((ROOT / "daemonset" / "kustomization.yaml").read_text())
    for entry in kustomization.get("images", []):
        if entry["name"] == name.split(":")[0]:
            name = f"{entry.get('newName', entry['name'])}:{entry['newTag']}"
    return normalize_ref(name)


def test_the_archive_is_tagged_with_the_name_daemonset_deploys(agent_image: AgentImage) -> None:
    assert agent_image.ref == daemonset_image()
    with tarfile.open(agent_image.tar) as archive:
        member = archive.extractfile("manifest.json")
        assert member is not None
        manifest = json.loads(member.read())
    assert [normalize_ref(t) for t in manifest[0]["RepoTags"]] == [agent_image.ref]


def test_the_image_says_its_base_is_a_stand_in(agent_image: AgentImage) -> None:
    with tarfile.open(agent_image.tar) as archive:
        member = archive.extractfile("manifest.json")
        assert member is not None
        config_name = json.loads(member.read())[0]["Config"]
        config_file = archive.extractfile(config_name)
        assert config_file is not None
        labels = json.loads(config_file.read())["config"]["Labels"]
    assert labels["podlens.lab.stand-in.for"] == BASE_IMAGE
    assert labels["podlens.lab.stand-in.python"].startswith("3.11.")
    # The upstream digest the Dockerfile pins is not what this image is built on.
    if agent_image.pinned_base_digest:
        assert labels["org.opencontainers.image.base.digest"] == agent_image.base.digest
        assert agent_image.base.digest != agent_image.pinned_base_digest


def test_containerd_lists_the_imported_image(
    agent_image: AgentImage, imported: list[str], containerd: PrivateContainerd
) -> None:
    assert imported == [agent_image.ref]
    ctr = shutil.which("ctr")
    assert ctr is not None
    assert agent_image.ref in containerd_images(ctr, containerd.address)


def test_the_image_runs_the_agent_cli(
    agent_image: AgentImage, imported: list[str], lab_pod, cri_driver: CriPodDriver
) -> None:
    code, text = run_to_exit(
        lab_pod, cri_driver, "agent-help", agent_image.ref, "python", "-m", "agent", "--help"
    )
    assert code == 0, text
    commands = re.search(r"\{([a-z,-]+)\}", text)
    assert commands is not None, text
    assert set(commands.group(1).split(",")) == {"serve", "diagnose"}
    assert re.search(r"\blab\b", text) is None, text


def test_the_image_holds_the_agent_and_not_the_lab(
    agent_image: AgentImage, imported: list[str], lab_pod, cri_driver: CriPodDriver
) -> None:
    probe = (
        "import importlib.util as u, sys; "
        "print(sys.executable, sys.version.split()[0]); "
        "print([m for m in ('agent', 'cri_proto', 'lab', 'tests') if u.find_spec(m)])"
    )
    code, text = run_to_exit(
        lab_pod, cri_driver, "agent-probe", agent_image.ref, "python", "-c", probe
    )
    assert code == 0, text
    first, found = text.splitlines()[:2]
    executable, version = first.split()
    assert executable == "/opt/podlens/bin/python"
    assert version == agent_image.base.python_version
    assert found == "['agent', 'cri_proto']"
