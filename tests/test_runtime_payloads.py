"""The committed verbose payloads against a fresh capture from each live runtime.

Runs against containerd 1.6, containerd 2.x and CRI-O (the ``cri_runtime``
matrix). tests/fixtures/cri/ holds payloads captured live
(tests/_cri_capture.py); each stays only while a capture from the same
runtime version has the same shape: the same keys, the same JSON types, the
same parts of the runtime spec the agent reads. A runtime of another version
fails here until the fixtures are captured again.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cri import major_minor
from lab.runtimes import PrivateRuntime
from tests._cri_capture import Capture, capture_all, fixtures_of, signature

pytestmark = pytest.mark.containerd

FIXTURES = Path(__file__).parent / "fixtures" / "cri"


@pytest.fixture(scope="module")
def live(cri_runtime: PrivateRuntime, lab_dir: Path) -> dict[str, Capture]:
    return {c.shape: c for c in capture_all(cri_runtime, lab_dir / f"capture-{cri_runtime.name}")}


def test_every_committed_payload_has_the_shape_the_runtime_answers_now(
    cri_runtime: PrivateRuntime, live: dict[str, Capture]
) -> None:
    committed = dict(fixtures_of(FIXTURES, cri_runtime.name))
    assert committed, f"no fixtures captured from {cri_runtime.name}"
    shapes = {str(data["shape"]) for data in committed.values()}
    assert shapes == set(live), "capture again: the shapes differ"
    for path, data in committed.items():
        now = live[str(data["shape"])]
        assert major_minor(str(data["version"])) == major_minor(now.version), (
            f"{path.name} was captured from {data['version']}, the runtime is {now.version}: "
            f"capture again (python -m tests._cri_capture --runtime {cri_runtime.name})"
        )
        assert data["call"] == now.call
        assert signature(data["info"]) == signature(now.info), path.name
