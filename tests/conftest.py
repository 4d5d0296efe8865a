"""Shared fixtures: the lab node (images, private runtimes, a pod driver).

Tests that need a real runtime are marked ``@pytest.mark.containerd`` and
use these fixtures. ``containerd`` is Debian's containerd 1.6; ``cri_runtime``
is the runtime matrix: the same test runs against containerd 1.6, containerd
2.x and CRI-O (``PODLENS_TEST_RUNTIMES=containerd,crio`` narrows it), each
started privately, one at a time. They are never skipped in CI: when ``CI``
is set and the machine cannot run one (not root, a package missing, an
upstream runtime not built), the fixture fails. Outside CI they skip with
the reason.
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
from lab.runtimes import FACTS, RUNTIMES, PrivateRuntime, RuntimeFacts, private_runtime
from lab.runtimes import runtime_problem as _named_runtime_problem

RUNTIMES_ENV = "PODLENS_TEST_RUNTIMES"
# A zone with a half-hour offset: +05:30 all year.
CRIO_TEST_TZ = "Asia/Kolkata"


def selected_runtimes() -> list[str]:
    """The runtimes the matrix runs against: all of them unless the environment narrows it."""
    raw = os.environ.get(RUNTIMES_ENV, "")
    chosen = [name.strip() for name in raw.split(",") if name.strip()] or list(RUNTIMES)
    unknown = sorted(set(chosen) - set(RUNTIMES))
    if unknown:
        raise pytest.UsageError(f"{RUNTIMES_ENV}: unknown runtime(s) {unknown}; known: {RUNTIMES}")
    return chosen


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


@pytest.fixture(scope="session", params=selected_runtimes())
def cri_runtime(
    request: pytest.FixtureRequest, lab_dir: Path, lab_images: list[ImageTar]
) -> Iterator[PrivateRuntime]:
    """The runtime matrix: one private instance per runtime, the tests grouped by it."""
    name: str = request.param
    if name == "containerd":
        # The same instance the tests outside the matrix use.
        yield request.getfixturevalue("containerd")
        return
    problem = _named_runtime_problem(name)
    if problem:
        lab_unavailable(f"{name}: {problem}")
    # CRI-O's log lines carry the local offset; outside UTC, a wrong reading shows.
    instance = private_runtime(name, lab_dir / name, lab_images, tz=CRIO_TEST_TZ)
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()


@pytest.fixture(scope="session")
def runtime_facts(cri_runtime: PrivateRuntime) -> RuntimeFacts:
    """What the tests may expect of the runtime under test."""
    return FACTS[cri_runtime.name]


@pytest.fixture(scope="session")
def runtime_driver(cri_runtime: PrivateRuntime, lab_dir: Path) -> Iterator[CriPodDriver]:
    """A kubelet-style pod driver on the runtime under test."""
    driver = CriPodDriver(cri_runtime.endpoint, lab_dir / f"pods-{cri_runtime.name}")
    try:
        yield driver
    finally:
        driver.remove_all()
        driver.close()


@pytest.fixture
def runtime_pod(runtime_driver: CriPodDriver) -> Iterator[Callable[..., PodHandle]]:
    """``runtime_pod(name, ...)`` as ``lab_pod``, on the runtime under test."""
    yield from _pods_of(runtime_driver)


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
    yield from _pods_of(cri_driver)


def _pods_of(driver: CriPodDriver) -> Iterator[Callable[..., PodHandle]]:
    made: list[PodHandle] = []

    def run(*args: Any, **kwargs: Any) -> PodHandle:
        try:
            handle = driver.run_pod(*args, **kwargs)
        except CriCallFailed as exc:
            if isinstance(exc.handle, PodHandle):
                made.append(exc.handle)
            raise
        made.append(handle)
        return handle

    yield run
    for handle in made:
        driver.remove_pod(handle)
