"""Verbose CRI status parsing, over payloads captured live and hand-made bad input."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.cri.verbose import (
    NO_INFRA_CONTAINER,
    NO_VERBOSE_INFO,
    UNREADABLE_VERBOSE_INFO,
    network_namespace_path,
    parse_container_info,
    parse_sandbox_info,
)
from agent.domain.model import ContainerState, Mount, NamespacePath, RuntimeKind, VerboseInfo

FIXTURES = Path(__file__).parent / "fixtures" / "cri"
# The capture's directory, as tests/_cri_capture.py writes it into each fixture.
CAPTURED = "/run/podlens-capture"
CD_NETNS = f"{CAPTURED}/containerd/state/io.containerd.grpc.v1.cri/netns"
CD2_NETNS = f"{CAPTURED}/containerd2/state/io.containerd.grpc.v1.cri/netns"
CRIO_PINS = f"{CAPTURED}/crio/netns"
# An ID of anything else, for the hand-made input below.
SB = "9b2e4c1d7a5f3e8b6c0d2a4f1e7b9c3d5a8f0e2b4d6c1a3f5e7b9d0c2a4e6f8b"

CD = RuntimeKind.CONTAINERD
CRIO = RuntimeKind.CRIO
RUNNING = ContainerState.RUNNING
EXITED = ContainerState.EXITED


def load_info(name: str) -> dict[str, str]:
    """The fixture's ``info`` map as the runtime sends it (string values only)."""
    data = json.loads((FIXTURES / name).read_text())
    return {
        key: value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        for key, value in data["info"].items()
    }


def ids(name: str) -> tuple[str, str]:
    """The sandbox and container IDs the capture made (from the CRI calls, not the info)."""
    data = json.loads((FIXTURES / name).read_text())
    return str(data["sandbox_id"]), str(data["container_id"] or "")


@dataclass(frozen=True)
class Case:
    fixture: str
    kind: RuntimeKind
    # A ContainerState means ContainerStatus; a bool means PodSandboxStatus (ready).
    status: ContainerState | bool
    pid: int | None
    netns: str | None
    # The fixture's own IDs are filled in: "sandbox" / "container" name them.
    sandbox_id: str | None
    cgroups_path: str | None
    note: str | None = None  # exact note, or a fragment when note_contains
    note_contains: bool = False
    needs_start_check: bool = False
    mount: Mount | None = None  # one mount that must be among the parsed ones
    namespace_types: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        status = (
            self.status.value
            if isinstance(self.status, ContainerState)
            else ("ready" if self.status else "notready")
        )
        return f"{self.fixture.removesuffix('.json')}[{status}]"

    def resolved(self, text: str | None) -> str | None:
        """``text`` with {sandbox} and {container} replaced by the fixture's IDs."""
        if text is None:
            return None
        sandbox, container = ids(self.fixture)
        return text.format(sandbox=sandbox, container=container)


def _parse(case: Case) -> VerboseInfo:
    info = load_info(case.fixture)
    if isinstance(case.status, ContainerState):
        return parse_container_info(case.kind, info, case.status)
    return parse_sandbox_info(case.kind, info, case.status)


CD_APP_NS = ("pid", "ipc", "uts", "mount", "network")
CD_POD_NS = ("pid", "ipc", "uts", "mount", "network")
CRIO_NS = ("pid", "network", "ipc", "uts", "mount")
SYS = Mount(destination="/sys", source="sysfs", type="sysfs", readonly=True)

# Each fixture is captured live (tests/_cri_capture.py) and checked against a
# fresh capture of the same runtime version by tests/test_runtime_payloads.py.
# The PIDs and netns paths are the ones the capture's runtime had.
CASES = [
    # ---- containerd 1.6
    Case(
        "containerd-1.6-container-running.json", CD, RUNNING,
        pid=10362, netns="/proc/10326/ns/net", sandbox_id="{sandbox}",
        cgroups_path="/k8s.io/{container}", mount=SYS, namespace_types=CD_APP_NS,
    ),
    Case(
        "containerd-1.6-container-exited.json", CD, EXITED,
        pid=None, netns="/proc/10326/ns/net", sandbox_id="{sandbox}",
        cgroups_path="/k8s.io/{container}",
    ),
    Case(
        "containerd-1.6-sandbox-ready.json", CD, True,
        pid=10326, netns=f"{CD_NETNS}/cni-27c269a9-ac0d-250c-e000-cdf335f8db54",
        sandbox_id=None, cgroups_path="/k8s.io/{sandbox}", namespace_types=CD_POD_NS,
    ),
    Case(
        "containerd-1.6-sandbox-stopped.json", CD, False,
        pid=None, netns=f"{CD_NETNS}/cni-e220124a-a084-5dcc-f4d8-7084173d752f",
        sandbox_id=None, cgroups_path="/k8s.io/{sandbox}",
    ),
    Case(
        "containerd-1.6-sandbox-hostnetwork.json", CD, True,
        pid=10433, netns=None, sandbox_id=None, cgroups_path="/k8s.io/{sandbox}",
        namespace_types=("pid", "ipc", "mount"),
    ),
    # ---- containerd 2.4 (sandboxMetadata names the sandbox and its netns)
    Case(
        "containerd-2.4-container-running.json", CD, RUNNING,
        pid=11065, netns="/proc/11042/ns/net", sandbox_id="{sandbox}",
        cgroups_path="/k8s.io/{container}", mount=SYS, namespace_types=CD_APP_NS,
    ),
    Case(
        "containerd-2.4-container-exited.json", CD, EXITED,
        pid=None, netns="/proc/11042/ns/net", sandbox_id="{sandbox}",
        cgroups_path="/k8s.io/{container}",
    ),
    Case(
        "containerd-2.4-sandbox-ready.json", CD, True,
        pid=11042, netns=f"{CD2_NETNS}/cni-20e6a55e-572b-8509-abba-0d2043b57094",
        sandbox_id="{sandbox}", cgroups_path="/k8s.io/{sandbox}", namespace_types=CD_POD_NS,
    ),
    Case(
        # processStatus "deleted", pid 0: the pause task is gone.
        "containerd-2.4-sandbox-stopped.json", CD, False,
        pid=None, netns=f"{CD2_NETNS}/cni-9591df09-5de0-7d8e-201a-95bcb087c32f",
        sandbox_id="{sandbox}", cgroups_path="/k8s.io/{sandbox}",
    ),
    Case(
        # runtimeSpec null: the netns comes from sandboxMetadata.Metadata.NetNSPath.
        "containerd-2.4-sandbox-no-spec.json", CD, False,
        pid=None, netns=f"{CD2_NETNS}/cni-9591df09-5de0-7d8e-201a-95bcb087c32f",
        sandbox_id="{sandbox}", cgroups_path=None, namespace_types=("network",),
    ),
    Case(
        "containerd-2.4-sandbox-hostnetwork.json", CD, True,
        pid=11141, netns=None, sandbox_id="{sandbox}", cgroups_path="/k8s.io/{sandbox}",
        namespace_types=("pid", "ipc", "mount"),
    ),
    # ---- CRI-O 1.34 (drop_infra_ctr: no pause process unless the pod shares its PID namespace)
    Case(
        "crio-1.34-container-running.json", CRIO, RUNNING,
        pid=11763, netns=f"{CRIO_PINS}/netns/229886f6-b01f-4294-8580-2c0a4325ef0b",
        sandbox_id="{sandbox}", cgroups_path="/crio/crio-{container}",
        needs_start_check=True, mount=SYS, namespace_types=CRIO_NS,
    ),
    Case(
        "crio-1.34-container-exited-stale-pid.json", CRIO, EXITED,
        pid=None, netns=f"{CRIO_PINS}/netns/229886f6-b01f-4294-8580-2c0a4325ef0b",
        sandbox_id="{sandbox}", cgroups_path="/crio/crio-{container}",
        note="CRI-O keeps reporting pid 11763", note_contains=True,
    ),
    Case(
        "crio-1.34-sandbox-no-infra.json", CRIO, True,
        pid=None, netns=f"{CRIO_PINS}/netns/229886f6-b01f-4294-8580-2c0a4325ef0b",
        sandbox_id=None, cgroups_path="crio-{sandbox}", note=NO_INFRA_CONTAINER,
        namespace_types=CRIO_NS,
    ),
    Case(
        # The spec still names a pinned network namespace; the agent's
        # conversion drops it for a host-network sandbox.
        "crio-1.34-sandbox-hostnetwork.json", CRIO, True,
        pid=None, netns=f"{CRIO_PINS}/netns/a41dd51b-58f6-460a-9b75-6ab03f5b6bb8",
        sandbox_id=None, cgroups_path="crio-{sandbox}", note=NO_INFRA_CONTAINER,
    ),
    Case(
        "crio-1.34-sandbox-infra.json", CRIO, True,
        pid=11912, netns=f"{CRIO_PINS}/netns/e6e14654-170b-4d27-95cf-44e8318b495b",
        sandbox_id=None, cgroups_path="crio-{sandbox}", needs_start_check=True,
    ),
    Case(
        "crio-1.34-sandbox-infra.json", CRIO, False,
        pid=None, netns=f"{CRIO_PINS}/netns/e6e14654-170b-4d27-95cf-44e8318b495b",
        sandbox_id=None, cgroups_path="crio-{sandbox}",
        note="sandbox is not ready", note_contains=True,
    ),
    Case(
        "crio-1.34-sandbox-stopped.json", CRIO, False,
        pid=None, netns=f"{CRIO_PINS}/netns/e6e14654-170b-4d27-95cf-44e8318b495b",
        sandbox_id=None, cgroups_path="crio-{sandbox}",
    ),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_fixture(case: Case) -> None:
    got = _parse(case)

    assert got.pid == case.pid
    if case.note_contains:
        assert got.pid_note is not None
        assert case.note is not None
        assert case.note in got.pid_note
    else:
        assert got.pid_note == case.note
    assert got.pid_needs_start_check is case.needs_start_check
    assert network_namespace_path(got) == case.netns
    assert got.sandbox_id == case.resolved(case.sandbox_id)
    assert got.cgroups_path == case.resolved(case.cgroups_path)
    if case.mount is not None:
        assert case.mount in got.mounts
    if case.namespace_types:
        assert tuple(ns.type for ns in got.namespaces) == case.namespace_types


def test_every_fixture_has_a_case() -> None:
    on_disk = {p.name for p in FIXTURES.glob("*.json")}
    assert on_disk == {c.fixture for c in CASES}


def test_containerd_exited_and_crio_stale_pid_differ() -> None:
    """containerd zeroes the pid on exit; CRI-O keeps it and it must not leak through."""
    exited = parse_container_info(CD, load_info("containerd-2.4-container-exited.json"), EXITED)
    assert exited.pid is None
    assert exited.pid_note is None  # pid 0 is just "not running"

    raw = json.loads(load_info("crio-1.34-container-exited-stale-pid.json")["info"])
    assert raw["pid"] == 11763  # CRI-O still says so
    stale = parse_container_info(
        CRIO, load_info("crio-1.34-container-exited-stale-pid.json"), EXITED
    )
    assert stale.pid is None
    assert stale.pid_note is not None
    assert "11763" in stale.pid_note


def test_crio_pid_of_created_container_is_not_used() -> None:
    got = parse_container_info(
        CRIO, load_info("crio-1.34-container-running.json"), ContainerState.CREATED
    )
    assert got.pid is None
    assert got.pid_note is not None
    assert "created" in got.pid_note


def test_mounts_keep_spec_order_and_readonly() -> None:
    got = parse_container_info(CD, load_info("containerd-1.6-container-running.json"), RUNNING)
    destinations = [m.destination for m in got.mounts]
    assert destinations[:3] == ["/proc", "/dev", "/dev/pts"]
    by_dest = {m.destination: m for m in got.mounts}
    assert by_dest["/sys"].readonly is True
    assert by_dest["/sys"].type == "sysfs"
    assert by_dest["/etc/resolv.conf"].readonly is False
    sandbox, _ = ids("containerd-1.6-container-running.json")
    assert by_dest["/etc/resolv.conf"].source.endswith(f"/sandboxes/{sandbox}/resolv.conf")


def test_crio_pinned_namespaces() -> None:
    got = parse_container_info(CRIO, load_info("crio-1.34-container-running.json"), RUNNING)
    paths = {ns.type: ns.path for ns in got.namespaces}
    pin = "229886f6-b01f-4294-8580-2c0a4325ef0b"
    assert paths["ipc"] == f"{CRIO_PINS}/ipcns/{pin}"
    assert paths["uts"] == f"{CRIO_PINS}/utsns/{pin}"
    assert paths["pid"] is None
    assert paths["mount"] is None


# --------------------------------------------------------------------------
# Missing and malformed input
# --------------------------------------------------------------------------

ALL_KINDS = list(RuntimeKind)
ALL_STATES = list(ContainerState)


def _wrap(obj: object) -> dict[str, str]:
    return {"info": json.dumps(obj)}


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize(
    ("info", "note"),
    [
        ({}, NO_VERBOSE_INFO),
        ({"info": ""}, NO_VERBOSE_INFO),
        ({"info": "   "}, NO_VERBOSE_INFO),
        ({"other": "x"}, NO_VERBOSE_INFO),
        ({"info": "{"}, UNREADABLE_VERBOSE_INFO),
        ({"info": "not json"}, UNREADABLE_VERBOSE_INFO),
        ({"info": "[]"}, UNREADABLE_VERBOSE_INFO),
        ({"info": "null"}, UNREADABLE_VERBOSE_INFO),
        ({"info": "42"}, UNREADABLE_VERBOSE_INFO),
        ({"info": '"a string"'}, UNREADABLE_VERBOSE_INFO),
        ({"info": "[" * 100_000}, UNREADABLE_VERBOSE_INFO),
        ({"info": '{"pid": ' + "9" * 10_000 + "}"}, UNREADABLE_VERBOSE_INFO),
    ],
    ids=[
        "empty-map",
        "empty-string",
        "blank",
        "unrelated-key",
        "truncated",
        "not-json",
        "array",
        "null",
        "number",
        "string",
        "deep-nesting",
        "huge-int",
    ],
)
def test_no_usable_info(kind: RuntimeKind, info: dict[str, str], note: str) -> None:
    for state in ALL_STATES:
        got = parse_container_info(kind, info, state)
        assert got == VerboseInfo(pid=None, pid_note=note)
    for ready in (True, False):
        got = parse_sandbox_info(kind, info, ready)
        assert got == VerboseInfo(pid=None, pid_note=note)


@pytest.mark.parametrize(
    "pid",
    ["4387", -1, -4387, True, False, 4387.0, 1.5, None, 2**40, 4_194_305, [4387], {"pid": 1}],
    ids=repr,
)
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_unusable_pid(kind: RuntimeKind, pid: object) -> None:
    info = _wrap({"sandboxID": SB, "pid": pid})
    got = parse_container_info(kind, info, RUNNING)
    assert got.pid is None
    assert got.pid_note is not None
    assert got.pid_note.startswith("runtime reported an unusable pid")
    assert got.sandbox_id == SB
    assert got.pid_needs_start_check is False

    sandbox = parse_sandbox_info(kind, info, True)
    assert sandbox.pid is None
    assert sandbox.pid_note is not None
    assert sandbox.pid_note.startswith("runtime reported an unusable pid")


def test_pid_bounds() -> None:
    assert parse_container_info(CD, _wrap({"pid": 1}), RUNNING).pid == 1
    assert parse_container_info(CD, _wrap({"pid": 4_194_304}), RUNNING).pid == 4_194_304


def test_missing_pid_is_explained() -> None:
    got = parse_container_info(CD, _wrap({"sandboxID": SB}), RUNNING)
    assert got.pid is None
    assert got.pid_note == "runtime's verbose info has no pid"

    sandbox = parse_sandbox_info(CD, _wrap({"processStatus": "running"}), True)
    assert sandbox.pid is None
    assert sandbox.pid_note == "runtime's verbose info has no pid"


def test_pid_zero_for_running_container_is_noted() -> None:
    got = parse_container_info(CD, _wrap({"pid": 0}), RUNNING)
    assert got.pid is None
    assert got.pid_note == "runtime reports no process for a running container"

    ready = parse_sandbox_info(CD, _wrap({"pid": 0}), True)
    assert ready.pid is None
    assert ready.pid_note == "runtime reports no pause process for a ready sandbox"


@pytest.mark.parametrize("state", [ContainerState.CREATED, EXITED, ContainerState.UNKNOWN])
def test_pid_zero_when_not_running_has_no_note(state: ContainerState) -> None:
    for kind in ALL_KINDS:
        got = parse_container_info(kind, _wrap({"pid": 0}), state)
        assert got == VerboseInfo(pid=None)


def test_containerd_pid_with_exited_state_is_dropped() -> None:
    got = parse_container_info(CD, _wrap({"pid": 4387}), EXITED)
    assert got.pid is None
    assert got.pid_note is not None
    assert "4387" in got.pid_note


def test_other_runtime_pid_needs_check_and_running() -> None:
    other = RuntimeKind.OTHER
    assert parse_container_info(other, _wrap({"pid": 77}), RUNNING) == VerboseInfo(
        pid=77, pid_needs_start_check=True
    )
    stopped = parse_container_info(other, _wrap({"pid": 77}), EXITED)
    assert stopped.pid is None
    assert stopped.pid_note is not None
    assert "the runtime keeps reporting pid 77" in stopped.pid_note


@pytest.mark.parametrize("status", ["stopped", "deleted"])
def test_containerd_dead_pause_process(status: str) -> None:
    got = parse_sandbox_info(CD, _wrap({"pid": 4212, "processStatus": status}), True)
    assert got.pid is None
    assert got.pid_note is not None
    assert status in got.pid_note


def test_containerd_sandbox_without_pid_is_not_called_no_infra() -> None:
    got = parse_sandbox_info(CD, _wrap({}), True)
    assert got.pid_note != NO_INFRA_CONTAINER


@pytest.mark.parametrize(
    "spec",
    [
        "a string",
        [],
        {"linux": []},
        {"linux": {"namespaces": {}, "cgroupsPath": 12}},
        {"linux": {"namespaces": "network"}, "mounts": {}},
        {"mounts": "none"},
    ],
    ids=repr,
)
def test_spec_of_wrong_shape_is_ignored(spec: object) -> None:
    got = parse_container_info(
        CD, _wrap({"pid": 4387, "sandboxID": SB, "runtimeSpec": spec}), RUNNING
    )
    assert got == VerboseInfo(pid=4387, sandbox_id=SB)


def test_bad_spec_entries_are_skipped() -> None:
    spec = {
        "linux": {
            "namespaces": [
                1,
                None,
                {"path": "/proc/1/ns/net"},
                {"type": 5},
                {"type": ""},
                {"type": "network", "path": 7},
                {"type": "ipc", "path": ""},
                {"type": "uts", "path": "/proc/9/ns/uts"},
            ],
            "cgroupsPath": "",
        },
        "mounts": [
            "x",
            {"destination": 3},
            {"source": "/no/destination"},
            {"destination": "/a", "options": "ro"},
            {"destination": "/b", "source": 9, "type": 4, "options": ["rbind", "ro", 3]},
            {"destination": "/c", "source": "/src", "type": "", "options": None},
        ],
    }
    got = parse_container_info(CD, _wrap({"pid": 10, "runtimeSpec": spec, "sandboxID": 5}), RUNNING)
    assert got.namespaces == (
        NamespacePath(type="network", path=None),
        NamespacePath(type="ipc", path=None),
        NamespacePath(type="uts", path="/proc/9/ns/uts"),
    )
    assert got.mounts == (
        Mount(destination="/a", source="", type=None, readonly=False),
        Mount(destination="/b", source="", type=None, readonly=True),
        Mount(destination="/c", source="/src", type=None, readonly=False),
    )
    assert got.cgroups_path is None
    assert got.sandbox_id is None
    # A network namespace without a path is the process's own.
    assert network_namespace_path(got) == "/proc/10/ns/net"


def test_network_namespace_path_rules() -> None:
    own = (NamespacePath(type="network", path=None),)
    assert network_namespace_path(VerboseInfo(pid=None, namespaces=own)) is None
    assert network_namespace_path(VerboseInfo(pid=31, namespaces=own)) == "/proc/31/ns/net"
    host = (NamespacePath(type="pid", path=None), NamespacePath(type="ipc", path="/x"))
    assert network_namespace_path(VerboseInfo(pid=31, namespaces=host)) is None
    assert network_namespace_path(VerboseInfo(pid=31)) is None


def test_legacy_layout_variants() -> None:
    spec = json.dumps({"linux": {"cgroupsPath": "/kubepods/x"}})
    # A bare (not JSON-quoted) sandbox ID is still taken.
    got = parse_container_info(CRIO, {"pid": "55", "sandboxID": SB, "runtimeSpec": spec}, RUNNING)
    assert got.pid == 55
    assert got.sandbox_id == SB
    assert got.cgroups_path == "/kubepods/x"
    assert got.pid_needs_start_check is True

    bad_pid = parse_container_info(CRIO, {"pid": "abc", "runtimeSpec": spec}, RUNNING)
    assert bad_pid.pid is None
    assert bad_pid.pid_note == "runtime reported an unusable pid ('abc')"
    assert bad_pid.cgroups_path == "/kubepods/x"

    bad_spec = parse_container_info(CD, {"pid": "55", "runtimeSpec": "{"}, RUNNING)
    assert bad_spec == VerboseInfo(pid=55)

    only_spec = parse_container_info(CD, {"runtimeSpec": spec}, RUNNING)
    assert only_spec.pid is None
    assert only_spec.pid_note == "runtime's verbose info has no pid"


def test_info_key_wins_over_legacy_keys() -> None:
    info = {"info": json.dumps({"pid": 12}), "pid": "99"}
    assert parse_container_info(CD, info, RUNNING).pid == 12


# --------------------------------------------------------------------------
# Mutated fixtures never raise
# --------------------------------------------------------------------------

_JUNK: list[Any] = [None, True, 0, -1, 1.5, "", "x", [], {}, [None], {"type": None}, 2**70]


def _mutate(node: Any, rng: random.Random) -> Any:
    """Replace one random subtree of ``node`` with junk."""
    if isinstance(node, dict) and node and rng.random() < 0.8:
        key = rng.choice(list(node))
        return {**node, key: _mutate(node[key], rng)}
    if isinstance(node, list) and node and rng.random() < 0.8:
        index = rng.randrange(len(node))
        return [*node[:index], _mutate(node[index], rng), *node[index + 1 :]]
    return rng.choice(_JUNK)


@pytest.mark.parametrize("fixture", sorted(p.name for p in FIXTURES.glob("*.json")))
def test_mutated_fixtures_never_raise(fixture: str) -> None:
    rng = random.Random(fixture)
    raw = json.loads((FIXTURES / fixture).read_text())["info"]
    for _ in range(150):
        mutated = _mutate(raw, rng)
        if not isinstance(mutated, dict):
            continue
        info = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in mutated.items()}
        for kind in ALL_KINDS:
            for state in ALL_STATES:
                got = parse_container_info(kind, info, state)
                network_namespace_path(got)
                if got.pid is not None:
                    assert 0 < got.pid <= 4_194_304
            for ready in (True, False):
                got = parse_sandbox_info(kind, info, ready)
                network_namespace_path(got)
                if got.pid is not None:
                    assert ready
