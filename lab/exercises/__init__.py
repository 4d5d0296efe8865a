"""The lab's exercises: multi-container pod manifests to ``lab apply``.

Most come from the CKAD multi-container pod lessons (init containers,
sidecars, ambassadors, shared volumes) and are kept as written there; where
one needs an image the lab cannot offer, busybox or nginx stands in and the
file's comment says so. ``crashloop-demo`` and ``init-fail-demo`` add the
two failures a troubleshooter meets most.

Each exercise names the STATUS and READY that ``kubectl get pod`` prints
once it has settled on the lab node, so a walkthrough or a benchmark can
wait for exactly that.

Owns the exercise files and what each settles at. Imports yaml only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DIRECTORY = Path(__file__).resolve().parent


@dataclass(frozen=True, slots=True)
class Exercise:
    """One exercise: its manifest file, the STATUS it settles at and what it shows."""

    name: str
    status: str
    ready: str
    shows: str

    @property
    def path(self) -> Path:
        """The exercise's YAML file."""
        return DIRECTORY / f"{self.name}.yaml"

    @property
    def pod(self) -> str:
        """The pod's name (each exercise is one pod named like its file)."""
        return self.name

    def text(self) -> str:
        """The YAML as written, to apply as is."""
        return self.path.read_text()

    def manifest(self) -> dict[str, Any]:
        """The manifest as one object; ValueError if the file holds anything else."""
        loaded = yaml.safe_load(self.text())
        if not isinstance(loaded, dict):
            raise ValueError(f"{self.path} does not hold one object")
        return loaded


EXERCISES: tuple[Exercise, ...] = (
    Exercise(
        "nginx-with-sidecar",
        "Running",
        "2/2",
        "nginx and a busybox sidecar tailing its access log through a shared emptyDir",
    ),
    Exercise(
        "sidecar-demo",
        "Running",
        "2/2",
        "sidecar log shipper following nginx's access log",
    ),
    Exercise("sidecar-pod", "Running", "2/2", "a plain second container beside nginx"),
    Exercise(
        "shared-vol",
        "Running",
        "2/2",
        "a writer and a reader sharing a file in an emptyDir",
    ),
    Exercise(
        "ambassador-demo",
        "Running",
        "2/2",
        "an app reaching its ambassador on localhost:5432 (the pod's shared network)",
    ),
    Exercise(
        "ambassador-pod",
        "Running",
        "2/2",
        "an app polling localhost:8080 where nothing listens (nginx is on 80)",
    ),
    Exercise("init-pod", "Running", "1/1", "an init container that finishes after 3 s"),
    Exercise(
        "full-pattern",
        "Running",
        "2/2",
        "init writes the page, nginx serves it, a monitor prints it",
    ),
    Exercise(
        "app-complete",
        "Running",
        "2/2",
        "init writes a config file, nginx and a monitor share it",
    ),
    Exercise(
        "init-demo",
        "Init:0/2",
        "0/1",
        "an init container stuck waiting for a Service name that never resolves",
    ),
    Exercise(
        "crashloop-demo",
        "CrashLoopBackOff",
        "0/1",
        "a container that exits 1 at once, restarted with a growing back-off",
    ),
    Exercise(
        "init-fail-demo",
        "Init:CrashLoopBackOff",
        "0/1",
        "an init container that exits 1, so the app never starts",
    ),
)

BY_NAME: dict[str, Exercise] = {e.name: e for e in EXERCISES}


def get(name: str) -> Exercise:
    """The exercise called ``name``; KeyError naming the known ones otherwise."""
    try:
        return BY_NAME[name]
    except KeyError:
        known = ", ".join(sorted(BY_NAME))
        raise KeyError(f"no exercise named {name!r}; known: {known}") from None


__all__ = ["BY_NAME", "DIRECTORY", "EXERCISES", "Exercise", "get"]
