"""Wire compatibility of ``cri_proto`` with the published CRI ``runtime.v1`` descriptor.

The reference is the serialized FileDescriptorProto inside the
``container-runtime-interface-api`` distribution. Its modules are never
imported (they pin another protobuf gencode version and would register the
same ``runtime.v1`` names in the default pool); the bytes are read out of the
source with ``ast`` instead.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pb2

from cri_proto import api_pb2

REFERENCE_DIST = "container-runtime-interface-api"
REFERENCE_FILE = "cri_api/v1/api_pb2.py"
INSTALL_HINT = f"pip install --no-deps {REFERENCE_DIST}"

EXPECTED_RPCS = {
    "RuntimeService": {
        "Version",
        "Status",
        "RunPodSandbox",
        "StopPodSandbox",
        "RemovePodSandbox",
        "PodSandboxStatus",
        "ListPodSandbox",
        "CreateContainer",
        "StartContainer",
        "StopContainer",
        "RemoveContainer",
        "ListContainers",
        "ContainerStatus",
        "ContainerStats",
        "ListContainerStats",
        "ExecSync",
        "Exec",
        "PortForward",
        "GetContainerEvents",
        "ListPodSandboxMetrics",
    },
    "ImageService": {"ListImages", "ImageStatus"},
}

FDP = descriptor_pb2.FileDescriptorProto
DP = descriptor_pb2.DescriptorProto
EDP = descriptor_pb2.EnumDescriptorProto


# --------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------


def _reference_source() -> Path:
    try:
        dist = importlib.metadata.distribution(REFERENCE_DIST)
    except importlib.metadata.PackageNotFoundError:
        dist = None
    if dist is None:
        pytest.fail(
            f"reference package {REFERENCE_DIST!r} is not installed; run: {INSTALL_HINT}",
            pytrace=False,
        )
    path = Path(str(dist.locate_file(REFERENCE_FILE)))
    if not path.is_file():
        pytest.fail(
            f"{REFERENCE_DIST} is installed but has no {REFERENCE_FILE}; reinstall: {INSTALL_HINT}",
            pytrace=False,
        )
    return path


def serialized_descriptor_from_source(source: str) -> bytes:
    """The bytes literal passed to ``...AddSerializedFile(b"...")`` in generated code."""
    found: list[bytes] = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "AddSerializedFile"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, bytes)
        ):
            found.append(node.args[0].value)
    if len(found) != 1:
        raise ValueError(f"expected one AddSerializedFile(bytes) call, found {len(found)}")
    return found[0]


@functools.cache
def _load_reference() -> bytes:
    source = _reference_source().read_text(encoding="utf-8")
    return serialized_descriptor_from_source(source)


def reference_descriptor() -> FDP:
    """Called from the test bodies (not a fixture) so a missing package fails, never errors."""
    return FDP.FromString(_load_reference())


@pytest.fixture
def ours() -> descriptor_pb2.FileDescriptorProto:
    proto = FDP()
    api_pb2.DESCRIPTOR.CopyToProto(proto)
    return proto


# --------------------------------------------------------------------------
# comparison
# --------------------------------------------------------------------------


def _field_signature(field: descriptor_pb2.FieldDescriptorProto) -> dict[str, object]:
    return {
        "number": field.number,
        "type": descriptor_pb2.FieldDescriptorProto.Type.Name(field.type),
        "type_name": field.type_name,
        "label": descriptor_pb2.FieldDescriptorProto.Label.Name(field.label),
        "proto3_optional": field.proto3_optional,
        "in_oneof": field.HasField("oneof_index"),
    }


def _compare_enum(path: str, ours: EDP, ref: EDP) -> list[str]:
    problems = []
    our_values = {v.name: v.number for v in ours.value}
    ref_values = {v.name: v.number for v in ref.value}
    for name in sorted(our_values.keys() | ref_values.keys()):
        if name not in ref_values:
            problems.append(f"enum {path}: value {name} not in reference")
        elif name not in our_values:
            problems.append(f"enum {path}: value {name} missing here")
        elif our_values[name] != ref_values[name]:
            problems.append(
                f"enum {path}.{name}: number {our_values[name]} != reference {ref_values[name]}"
            )
    return problems


def _compare_message(path: str, ours: DP, ref: DP) -> list[str]:
    problems = []
    if ours.options.map_entry != ref.options.map_entry:
        problems.append(f"message {path}: map_entry {ours.options.map_entry} differs")

    our_fields = {f.name: _field_signature(f) for f in ours.field}
    ref_fields = {f.name: _field_signature(f) for f in ref.field}
    for name in sorted(our_fields.keys() | ref_fields.keys()):
        if name not in ref_fields:
            problems.append(f"message {path}: field {name} not in reference")
        elif name not in our_fields:
            problems.append(f"message {path}: field {name} missing here")
        else:
            for attr, value in our_fields[name].items():
                if value != ref_fields[name][attr]:
                    problems.append(
                        f"message {path}.{name}: {attr} {value!r} != reference "
                        f"{ref_fields[name][attr]!r}"
                    )

    our_oneofs = [o.name for o in ours.oneof_decl]
    ref_oneofs = [o.name for o in ref.oneof_decl]
    if our_oneofs != ref_oneofs:
        problems.append(f"message {path}: oneofs {our_oneofs} != reference {ref_oneofs}")

    problems += _compare_named(
        path, "nested message", ours.nested_type, ref.nested_type, _compare_message
    )
    problems += _compare_named(path, "nested enum", ours.enum_type, ref.enum_type, _compare_enum)
    return problems


def _compare_named(
    scope: str,
    kind: str,
    ours: Sequence[Any],
    ref: Sequence[Any],
    compare_one: Callable[[str, Any, Any], list[str]],
) -> list[str]:
    """Both directions for nested declarations of a message we include."""
    problems = []
    our_by_name = {d.name: d for d in ours}
    ref_by_name = {d.name: d for d in ref}
    for name in sorted(our_by_name.keys() | ref_by_name.keys()):
        if name not in ref_by_name:
            problems.append(f"{kind} {scope}.{name} not in reference")
        elif name not in our_by_name:
            problems.append(f"{kind} {scope}.{name} missing here")
        else:
            problems += compare_one(f"{scope}.{name}", our_by_name[name], ref_by_name[name])
    return problems


def compare_descriptors(ours: FDP, ref: FDP) -> list[str]:
    """Every difference that would break wire (or JSON) compatibility, as text.

    Top-level messages and enums are checked one way (ours is a subset);
    everything inside a message we declare is checked both ways.
    """
    problems: list[str] = []
    if ours.package != ref.package:
        problems.append(f"package {ours.package!r} != reference {ref.package!r}")
    if ours.syntax != ref.syntax:
        problems.append(f"syntax {ours.syntax!r} != reference {ref.syntax!r}")

    ref_messages = {m.name: m for m in ref.message_type}
    for msg in ours.message_type:
        if msg.name not in ref_messages:
            problems.append(f"message {msg.name} not in reference")
        else:
            problems += _compare_message(msg.name, msg, ref_messages[msg.name])

    ref_enums = {e.name: e for e in ref.enum_type}
    for enum in ours.enum_type:
        if enum.name not in ref_enums:
            problems.append(f"enum {enum.name} not in reference")
        else:
            problems += _compare_enum(enum.name, enum, ref_enums[enum.name])

    ref_services = {s.name: s for s in ref.service}
    for service in ours.service:
        if service.name not in ref_services:
            problems.append(f"service {service.name} not in reference")
            continue
        ref_methods = {m.name: m for m in ref_services[service.name].method}
        for method in service.method:
            where = f"rpc {service.name}.{method.name}"
            ref_method = ref_methods.get(method.name)
            if ref_method is None:
                problems.append(f"{where} not in reference")
                continue
            for attr in ("input_type", "output_type", "client_streaming", "server_streaming"):
                mine, theirs = getattr(method, attr), getattr(ref_method, attr)
                if mine != theirs:
                    problems.append(f"{where}: {attr} {mine!r} != reference {theirs!r}")
    return problems


# --------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------


def test_package_is_runtime_v1(ours: FDP) -> None:
    reference = reference_descriptor()
    assert ours.package == "runtime.v1"
    assert reference.package == "runtime.v1"
    assert ours.syntax == "proto3"


def test_matches_reference(ours: FDP) -> None:
    reference = reference_descriptor()
    problems = compare_descriptors(ours, reference)
    assert not problems, "cri_proto differs from the reference CRI API:\n" + "\n".join(problems)


def test_declares_exactly_the_agreed_rpcs(ours: FDP) -> None:
    declared = {s.name: {m.name for m in s.method} for s in ours.service}
    assert declared == EXPECTED_RPCS
    events = next(
        m
        for s in ours.service
        if s.name == "RuntimeService"
        for m in s.method
        if m.name == "GetContainerEvents"
    )
    assert events.server_streaming
    assert not events.client_streaming


def test_subset_is_closed(ours: FDP) -> None:
    """Every type a field or RPC names is declared in this file."""
    declared: set[str] = set()

    def collect(prefix: str, messages: Sequence[DP], enums: Sequence[EDP]) -> None:
        for enum in enums:
            declared.add(f"{prefix}.{enum.name}")
        for msg in messages:
            declared.add(f"{prefix}.{msg.name}")
            collect(f"{prefix}.{msg.name}", msg.nested_type, msg.enum_type)

    collect(f".{ours.package}", ours.message_type, ours.enum_type)

    referenced: set[str] = set()

    def refs(messages: Sequence[DP]) -> None:
        for msg in messages:
            referenced.update(f.type_name for f in msg.field if f.type_name)
            refs(msg.nested_type)

    refs(ours.message_type)
    for service in ours.service:
        for method in service.method:
            referenced.update((method.input_type, method.output_type))
    assert referenced <= declared, sorted(referenced - declared)


def test_no_foreign_imports(ours: FDP) -> None:
    assert list(ours.dependency) == []


def test_serialized_bytes_extraction_from_generated_source() -> None:
    """The extractor works on our own generated module, where the answer is known."""
    source = Path(api_pb2.__file__).read_text(encoding="utf-8")
    extracted = FDP.FromString(serialized_descriptor_from_source(source))
    expected = FDP()
    api_pb2.DESCRIPTOR.CopyToProto(expected)
    assert extracted.message_type == expected.message_type
    assert extracted.service == expected.service


def _mutated(ours: FDP) -> FDP:
    return FDP.FromString(ours.SerializeToString())


def _field(proto: FDP, message: str, field: str) -> descriptor_pb2.FieldDescriptorProto:
    msg = next(m for m in proto.message_type if m.name == message)
    return next(f for f in msg.field if f.name == field)


def _renumber(p: FDP) -> None:
    _field(p, "ContainerStatus", "exit_code").number = 99


def _retype(p: FDP) -> None:
    _field(p, "ContainerStatus", "exit_code").type = descriptor_pb2.FieldDescriptorProto.TYPE_INT64


def _relabel(p: FDP) -> None:
    f = _field(p, "ExecSyncRequest", "cmd")
    f.label = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL


def _drop_field(p: FDP) -> None:
    msg = next(m for m in p.message_type if m.name == "Image")
    del msg.field[-1]


def _drop_map_entry(p: FDP) -> None:
    msg = next(m for m in p.message_type if m.name == "ContainerStatusResponse")
    del msg.nested_type[:]


def _enum_value(p: FDP) -> None:
    enum = next(e for e in p.enum_type if e.name == "ContainerState")
    enum.value[-1].number = 7


def _unstream(p: FDP) -> None:
    svc = next(s for s in p.service if s.name == "RuntimeService")
    next(m for m in svc.method if m.name == "GetContainerEvents").server_streaming = False


def _package(p: FDP) -> None:
    p.package = "runtime.v1alpha2"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_renumber, "ContainerStatus.exit_code: number 99"),
        (_retype, "ContainerStatus.exit_code: type 'TYPE_INT64'"),
        (_relabel, "ExecSyncRequest.cmd: label 'LABEL_OPTIONAL'"),
        (_drop_field, "message Image: field pinned missing here"),
        (_drop_map_entry, "nested message ContainerStatusResponse.InfoEntry missing here"),
        (_enum_value, "enum ContainerState.CONTAINER_UNKNOWN: number 7"),
        (_unstream, "rpc RuntimeService.GetContainerEvents: server_streaming False"),
        (_package, "package 'runtime.v1alpha2'"),
    ],
)
def test_comparison_catches_mutations(
    ours: FDP, mutate: Callable[[FDP], None], expected: str
) -> None:
    reference = reference_descriptor()
    broken = _mutated(ours)
    mutate(broken)
    problems = compare_descriptors(broken, reference)
    assert any(expected in p for p in problems), problems
