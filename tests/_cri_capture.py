"""Verbose CRI payloads captured live, for tests/fixtures/cri/ and for checking it.

Each shape is one ``info`` map a runtime answered to a verbose
``ContainerStatus`` or ``PodSandboxStatus`` for an object in a known state,
made here through CRI as kubelet makes it. ``capture_all`` makes every shape
its runtime has; ``signature`` is what must not drift between a committed
fixture and a fresh capture of the same runtime version (the keys, the JSON
types, and the parts of the runtime spec the agent reads).

Regenerate the fixtures (as root, the runtime built or installed)::

    python -m tests._cri_capture --runtime containerd2 --out tests/fixtures/cri

Not a test module (the leading underscore keeps pytest from collecting it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.cri import major_minor
from cri_proto import api_pb2
from lab.cri_pods import ContainerDef, CriPodDriver
from lab.images import BUSYBOX_IMAGE, build_images, default_cache_dir
from lab.runtimes import RUNTIMES, PrivateContainerd2, PrivateRuntime, private_runtime

# The capture's own directories are replaced by this, so a fixture reads the
# same whoever captured it (and says nothing about where).
PLACEHOLDER = "/run/podlens-capture"
SLEEP = ["sleep", "3600"]
# What each runtime's fixtures are named by (the version's major.minor follows).
FAMILY = {"containerd": "containerd", "containerd2": "containerd", "crio": "crio"}


@dataclass(frozen=True, slots=True)
class Capture:
    """One verbose answer: which runtime and version, what shape, the IDs involved."""

    runtime: str  # lab runtime name
    version: str  # as CRI Version answers it
    shape: str
    call: str  # ContainerStatus or PodSandboxStatus
    info: dict[str, str]
    sandbox_id: str
    container_id: str | None

    @property
    def file_name(self) -> str:
        """``<family>-<major.minor>-<shape>.json``."""
        found = major_minor(self.version)
        version = f"{found[0]}.{found[1]}" if found else self.version
        return f"{FAMILY[self.runtime]}-{version}-{self.shape}.json"

    def to_json(self) -> dict[str, Any]:
        """The fixture file's content; ``info["info"]`` decoded to stay readable."""
        info: dict[str, Any] = {}
        for key, value in self.info.items():
            try:
                info[key] = json.loads(value) if key == "info" else value
            except ValueError:
                info[key] = value
        return {
            "about": f"{self.call} verbose info, {self.shape}: captured live from "
            f"{self.runtime} {self.version} by tests/_cri_capture.py",
            "runtime": self.runtime,
            "version": self.version,
            "shape": self.shape,
            "call": self.call,
            "sandbox_id": self.sandbox_id,
            "container_id": self.container_id,
            "info": info,
        }


def _sanitize(info: Mapping[str, str], base: Path) -> dict[str, str]:
    return {k: v.replace(str(base), PLACEHOLDER) for k, v in info.items()}


def capture_all(runtime: PrivateRuntime, base: Path) -> list[Capture]:
    """Every shape this runtime has, from pods made for the purpose and removed after."""
    version = _version(runtime)
    made: list[Capture] = []
    with CriPodDriver(runtime.endpoint, base / "capture-pods") as driver:
        try:

            def sandbox(shape: str, sandbox_id: str) -> None:
                info = driver.sandbox_status(sandbox_id, verbose=True).info
                made.append(
                    Capture(
                        runtime.name,
                        version,
                        shape,
                        "PodSandboxStatus",
                        _sanitize(info, base),
                        sandbox_id,
                        None,
                    )
                )

            def container(shape: str, sandbox_id: str, container_id: str) -> None:
                info = driver.container_status(container_id, verbose=True).info
                made.append(
                    Capture(
                        runtime.name,
                        version,
                        shape,
                        "ContainerStatus",
                        _sanitize(info, base),
                        sandbox_id,
                        container_id,
                    )
                )

            app = [ContainerDef("app", BUSYBOX_IMAGE, command=SLEEP)]
            pod = driver.run_pod("capture", "capture", containers=app)
            cid = pod.container_id("app")
            container("container-running", pod.sandbox_id, cid)
            ready = "sandbox-no-infra" if runtime.name == "crio" else "sandbox-ready"
            sandbox(ready, pod.sandbox_id)
            driver.stop_container(cid, timeout=0)
            driver.wait_container_state(cid, api_pb2.CONTAINER_EXITED)
            exited = "container-exited-stale-pid" if runtime.name == "crio" else "container-exited"
            container(exited, pod.sandbox_id, cid)

            hostnet = driver.run_pod("capture-host", "capture", containers=app, host_network=True)
            sandbox("sandbox-hostnetwork", hostnet.sandbox_id)

            # A pod with a pause process everywhere: on CRI-O, one sharing its PID namespace.
            shared = driver.run_pod(
                "capture-shared", "capture", containers=app, share_process_namespace=True
            )
            if runtime.name == "crio":
                sandbox("sandbox-infra", shared.sandbox_id)
            driver.stop_pod(shared)
            sandbox("sandbox-stopped", shared.sandbox_id)

            if isinstance(runtime, PrivateContainerd2):
                # Its sandbox container gone: the CRI service answers from its own store.
                subprocess.run(
                    [
                        str(runtime.bin_dir / "ctr"),
                        "-a",
                        runtime.address,
                        "-n",
                        "k8s.io",
                        "containers",
                        "rm",
                        shared.sandbox_id,
                    ],
                    check=True,
                    capture_output=True,
                    timeout=30,
                )
                sandbox("sandbox-no-spec", shared.sandbox_id)
        finally:
            driver.remove_all()
    return made


def _version(runtime: PrivateRuntime) -> str:
    with CriPodDriver(runtime.endpoint, Path(tempfile.gettempdir())) as driver:
        answer = driver.runtime.Version(api_pb2.VersionRequest(version="v1"), timeout=10)
    return str(answer.runtime_version)


# --------------------------------------------------------------------------
# What must not drift
# --------------------------------------------------------------------------


def _type(value: object) -> str:
    if value is None:
        return "null"
    return {bool: "bool", int: "number", float: "number", str: "string", list: "array"}.get(
        type(value), "object"
    )


def signature(info: Mapping[str, Any]) -> dict[str, Any]:
    """The keys and JSON types of a verbose ``info``, and the spec parts the agent reads.

    Values that are JSON text (``info["info"]``) are decoded first, so a
    committed fixture (decoded) and a live answer (text) compare alike.
    """
    out: dict[str, Any] = {}
    for key, raw in info.items():
        value = raw
        if isinstance(raw, str):
            with contextlib.suppress(ValueError):
                value = json.loads(raw)
        out[key] = _type(value)
        if isinstance(value, dict):
            out[key] = {k: _type(v) for k, v in value.items()}
            spec = value.get("runtimeSpec")
            if isinstance(spec, dict):
                found = spec.get("linux")
                linux: dict[str, Any] = found if isinstance(found, dict) else {}
                out[f"{key}.runtimeSpec"] = {
                    "keys": sorted(spec),
                    "linux": sorted(linux),
                    "namespaces": sorted(
                        (str(n.get("type")), "path" in n)
                        for n in linux.get("namespaces") or []
                        if isinstance(n, dict)
                    ),
                    "mount": sorted(
                        {k for m in spec.get("mounts") or [] if isinstance(m, dict) for k in m}
                    ),
                }
    return out


def fixtures_of(directory: Path, runtime: str) -> Iterator[tuple[Path, dict[str, Any]]]:
    """The captured fixtures of lab runtime ``runtime`` in ``directory``."""
    for path in sorted(directory.glob("*.json")):
        data = json.loads(path.read_text())
        if data.get("runtime") == runtime:
            yield path, data


def main(argv: list[str] | None = None, *, out: Callable[[str], None] = print) -> int:
    """Capture every shape of one runtime into a directory of fixtures."""
    parser = argparse.ArgumentParser(prog="python -m tests._cri_capture")
    parser.add_argument("--runtime", choices=RUNTIMES, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    images = build_images(default_cache_dir())
    base = Path(tempfile.mkdtemp(prefix="plc-", dir="/tmp"))
    runtime = private_runtime(args.runtime, base / args.runtime, images)
    try:
        runtime.start()
        captures = capture_all(runtime, base)
    finally:
        try:
            runtime.stop()
        finally:
            shutil.rmtree(base, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    for capture in captures:
        path = args.out / capture.file_name
        path.write_text(json.dumps(capture.to_json(), indent=2, sort_keys=True) + "\n")
        out(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
