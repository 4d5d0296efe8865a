"""Shared fixtures: the lab node (images, a private containerd, a pod driver).

Tests that need the real runtime are marked ``@pytest.mark.containerd`` and
use these fixtures. They are never skipped in CI: when ``CI`` is set and the
machine cannot run the lab (not root, containerd missing), the fixture fails.
Outside CI they skip with the reason.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.containerd import PrivateContainerd
from lab.cri_pods import CriPodDriver, PodHandle
from lab.errors import CriCallFailed, LabError
from lab.images import ImageTar, build_images, default_cache_dir


def lab_unavailable(reason: str) -> None:
    """Fail under CI, skip elsewhere: real-runtime tests must run in CI."""
    if os.environ.get("CI"):
        pytest.fail(f"lab node unavailable in CI: {reason}", pytrace=False)
    pytest.skip(f"lab node unavailable: {reason}")


def _runtime_problem() -> str | None:
    if os.geteuid() != 0:
        return "not root (the lab starts containerd, runc and a bridge)"
    for tool, package in (("containerd", "containerd"), ("runc", "runc"), ("ctr", "containerd")):
        if shutil.which(tool) is None:
            return f"{tool} not installed (apt-get install -y {package})"
    return None


@pytest.fixture(scope="session")
def lab_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Kept short: the containerd socket path must fit in a sockaddr_un.
    return tmp_path_factory.mktemp("lab")


@pytest.fixture(scope="session")
def lab_images() -> list[ImageTar]:
    cache = os.environ.get("PODLENS_IMAGE_CACHE")
    try:
        return build_images(Path(cache) if cache else default_cache_dir())
    except LabError as exc:
        lab_unavailable(str(exc))
        raise


@pytest.fixture(scope="session")
def containerd(lab_dir: Path, lab_images: list[ImageTar]) -> Iterator[PrivateContainerd]:
    problem = _runtime_problem()
    if problem:
        lab_unavailable(problem)
    instance = PrivateContainerd(lab_dir / "containerd", lab_images)
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()


@pytest.fixture(scope="session")
def cri_driver(containerd: PrivateContainerd, lab_dir: Path) -> Iterator[CriPodDriver]:
    driver = CriPodDriver(containerd.endpoint, lab_dir / "pods")
    try:
        yield driver
    finally:
        driver.remove_all()
        driver.close()


@pytest.fixture
def lab_pod(cri_driver: CriPodDriver) -> Iterator[Callable[..., PodHandle]]:
    """``lab_pod(name, ...)`` runs a pod (``CriPodDriver.run_pod`` arguments);
    every pod it made is removed after the test."""
    made: list[PodHandle] = []

    def run(*args: Any, **kwargs: Any) -> PodHandle:
        try:
            handle = cri_driver.run_pod(*args, **kwargs)
        except CriCallFailed as exc:
            if isinstance(exc.handle, PodHandle):
                made.append(exc.handle)
            raise
        made.append(handle)
        return handle

    yield run
    for handle in made:
        cri_driver.remove_pod(handle)
