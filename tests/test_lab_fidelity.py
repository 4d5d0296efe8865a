"""The stand-in lab measured against the real node: the same pods, every observable compared.

The real node is the session's (``lab up --real``, tests/real_cluster.py);
the stand-in lab is this module's own (``lab up``, nominal time, as a
learner runs it). ``lab.fidelity`` runs its fixed scenarios on both at once
and compares what each showed over time; any difference ``lab.fidelity.KNOWN``
does not explain fails the test, printed with both values. The README's
fidelity section lists the known ones with their reasons, and this test
checks it says each.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import fidelity
from lab.node import LabNode
from tests.conftest import lab_unavailable
from tests.real_cluster import RealCluster
from tests.test_lab_node import free_port, run_cli, runtime_problem

pytest_plugins = ("tests.real_cluster",)
pytestmark = [pytest.mark.containerd, pytest.mark.real]

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabNode]:
    problem = runtime_problem()
    if problem:
        lab_unavailable(problem)
    lab_dir = tmp_path_factory.mktemp("fidelity")
    node = LabNode(lab_dir)
    proc = run_cli("up", "--port", str(free_port()), lab_dir=lab_dir)
    try:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        yield node
    finally:
        if node.load_state() is not None:
            down = run_cli("down", lab_dir=lab_dir)
            assert down.returncode == 0, down.stderr


@pytest.mark.usefixtures("module_timer")
def test_the_stand_in_shows_what_the_real_node_shows(
    stand_in: LabNode, real_cluster: RealCluster
) -> None:
    seen: dict[str, dict[str, fidelity.Observation]] = {}
    errors: list[BaseException] = []

    def observe(label: str, node: LabNode) -> None:
        try:
            seen[label] = fidelity.observe(node, fidelity.SCENARIOS, progress=print)
        except BaseException as exc:  # handed to the test's thread
            errors.append(exc)

    threads = [
        threading.Thread(target=observe, args=("lab", stand_in)),
        threading.Thread(target=observe, args=("real", real_cluster.node)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    assert not errors, errors
    differences = fidelity.compare(seen["lab"], seen["real"])
    for difference in differences:
        print(difference.render())
    counts = fidelity.counts(seen["lab"], seen["real"], differences)
    for name, (compared, differing) in sorted(counts.items()):
        print(f"{name}: {compared} observables, {differing} differ")
    # Each scenario was seen on both nodes, with its pod's phase and events.
    for name in (s.name for s in fidelity.SCENARIOS):
        for label in ("lab", "real"):
            values = seen[label][name].values
            assert values.get("phase"), f"{name} on the {label} node: never read"
            assert any(k.startswith("event ") for k in values), f"{name} on {label}: no events"
    left = fidelity.unexplained(differences)
    assert not left, "differences the stand-in lab does not explain:\n" + "\n".join(
        d.render() for d in left
    )


def test_the_readme_lists_every_known_difference() -> None:
    text = README.read_text()
    for (scenario, observable), _ in fidelity.KNOWN.items():
        assert f"`{scenario}` `{observable}`" in text, (scenario, observable)
