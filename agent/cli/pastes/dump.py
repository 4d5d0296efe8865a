"""A ``kubectl cluster-info dump``, read one namespace and one pod at a time.

With ``--output-directory DIR`` kubectl writes (k8s.io/kubectl
pkg/cmd/clusterinfo, ``clusterinfo_dump.go``)::

    DIR/nodes.json
    DIR/<namespace>/events.json                  an EventList
    DIR/<namespace>/pods.json                    a PodList
    DIR/<namespace>/{replication-controllers,services,daemonsets,deployments,replicasets}.json
    DIR/<namespace>/<pod>/logs.txt               each container's log between
        ==== START logs for container <c> of pod <ns>/<pod> ====
        ==== END logs for container <c> of pod <ns>/<pod> ====

``-o yaml`` gives ``.yaml`` files. Without ``--output-directory`` the same
Lists and log sections follow each other on standard output; saved to a
file, that is read too (JSON only). A namespace's pods are streamed item by
item (``_stream``); only the events about pods are kept, per namespace.

Part of the wiring layer: imports ``_stream`` and the errors only.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from agent.cli.pastes._stream import LOG_START, json_stream, yaml_list_items
from agent.errors import InvalidInput

__all__ = [
    "DumpLayout",
    "NamespaceFiles",
    "find_dump",
    "namespace_events",
    "namespace_pods",
    "pod_logs",
    "stream_file",
]

Format = Literal["json", "yaml"]
_LOG_HEADER = re.compile(
    r"^==== START logs for container (?P<container>\S+) of pod (?P<ns>[^/\s]+)/(?P<pod>\S+) ====$"
)
# Lines kubectl writes instead of a log when it could not get one.
_LOG_ERRORS = ("Create log request error:", "Request log error:")


@dataclass(frozen=True, slots=True)
class NamespaceFiles:
    """One namespace of a dump directory: its PodList and EventList files."""

    name: str
    pods: Path
    events: Path | None
    fmt: Format


@dataclass(frozen=True, slots=True)
class DumpLayout:
    """What ``find_dump`` recognised: a directory of namespaces, or one stdout file."""

    root: Path
    form: Literal["directory", "file"]
    fmt: Format
    namespaces: tuple[NamespaceFiles, ...] = ()

    @property
    def recognised(self) -> str:
        """The layout in words, for the answer's ``input``."""
        if self.form == "file":
            return "a kubectl cluster-info dump written to standard output (JSON), one file"
        return (
            f"a kubectl cluster-info dump directory (-o {self.fmt}), "
            f"{len(self.namespaces)} namespace{'s' if len(self.namespaces) != 1 else ''}"
        )


def find_dump(path: Path) -> DumpLayout:
    """The dump at ``path``; ``InvalidInput`` naming what was found and what is missing."""
    if not path.exists():
        raise InvalidInput(f"--dump {path}: no such file or directory")
    if path.is_file():
        with path.open(encoding="utf-8", errors="replace") as f:
            head = f.read(4096).lstrip("\ufeff \t\r\n")
        if not head.startswith("{"):
            raise InvalidInput(
                f"--dump {path}: a file, but not a cluster-info dump written to standard output "
                "as JSON (it should start with the NodeList); give the --output-directory "
                "directory instead"
            )
        return DumpLayout(path, "file", "json")
    found: list[NamespaceFiles] = []
    for child in sorted(p for p in path.iterdir() if p.is_dir()):
        for fmt, ext in (("json", ".json"), ("yaml", ".yaml"), ("json", ".txt")):
            pods = child / f"pods{ext}"
            if pods.is_file():
                events = child / f"events{ext}"
                found.append(
                    NamespaceFiles(child.name, pods, events if events.is_file() else None, fmt)  # type: ignore[arg-type]
                )
                break
    if not found:
        top = sorted(p.name for p in path.iterdir())[:6]
        seen = ", ".join(top) if top else "nothing"
        raise InvalidInput(
            f"--dump {path}: not a kubectl cluster-info dump directory (recognised a directory "
            f"holding {seen}); it needs <namespace>/pods.json (or pods.yaml) for at least one "
            "namespace"
        )
    fmts = {ns.fmt for ns in found}
    return DumpLayout(path, "directory", "yaml" if fmts == {"yaml"} else "json", tuple(found))


def _items(path: Path, fmt: Format) -> Iterator[Any]:
    what = str(path)
    with path.open(encoding="utf-8", errors="replace") as f:
        if fmt == "yaml":
            for tag, value in yaml_list_items(f, what):
                if tag == "item":
                    yield value
            return
        for tag, _, value in json_stream(f, what):
            if tag == "item" or (
                tag == "value" and isinstance(value, Mapping) and value.get("kind") == "Pod"
            ):
                yield value


def namespace_pods(ns: NamespaceFiles) -> Iterator[Any]:
    """The pods of one namespace, one at a time."""
    return _items(ns.pods, ns.fmt)


def is_pod_event(item: object) -> bool:
    """Whether an Event item is about a pod (the only ones the rules read)."""
    if not isinstance(item, Mapping):
        return False
    involved = item.get("involvedObject") or item.get("regarding")
    return isinstance(involved, Mapping) and involved.get("kind") == "Pod"


def namespace_events(ns: NamespaceFiles) -> Iterator[Mapping[str, Any]]:
    """The events of one namespace that are about pods."""
    if ns.events is None:
        return iter(())
    return (item for item in _items(ns.events, ns.fmt) if is_pod_event(item))


def _tail_lines(lines: Iterator[str], keep: int) -> dict[str, tuple[str, ...]]:
    out: dict[str, deque[str]] = {}
    current: deque[str] | None = None
    for line in lines:
        m = _LOG_HEADER.match(line)
        if m is not None:
            current = out.setdefault(m.group("container"), deque(maxlen=keep))
            continue
        if line.startswith("==== END logs for container "):
            current = None
            continue
        if current is not None and not line.startswith(_LOG_ERRORS):
            current.append(line)
    return {name: tuple(tail) for name, tail in out.items() if tail}


def pod_logs(root: Path, namespace: str, pod: str, keep: int) -> dict[str, tuple[str, ...]]:
    """The last ``keep`` lines of each container's log in ``<ns>/<pod>/logs.txt``; {} if none."""
    path = root / namespace / pod / "logs.txt"
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            return _tail_lines((ln.rstrip("\r\n") for ln in f), keep)
    except OSError:
        return {}


@dataclass(slots=True)
class FileEvent:
    """One piece of a stdout dump: a pod, an event about a pod, a log line, or a List's start."""

    what: Literal["pod", "event", "log", "list"]
    value: Any = None
    kind: str = ""
    log: tuple[str, str, str, str] | None = None  # namespace, pod, container, line


def stream_file(path: Path) -> Iterator[FileEvent]:
    """The pods, pod events and log lines of a dump saved from standard output, in order."""
    with path.open(encoding="utf-8", errors="replace") as f:
        last_kind = None
        for tag, kind, value in json_stream(f, str(path)):
            if tag == "log":
                header, line = value
                m = _LOG_HEADER.match(header) if header.startswith(LOG_START) else None
                if m is not None and not line.startswith(_LOG_ERRORS):
                    yield FileEvent(
                        "log", log=(m.group("ns"), m.group("pod"), m.group("container"), line)
                    )
                continue
            if tag != "item":
                continue
            if kind != last_kind:
                last_kind = kind
                yield FileEvent("list", kind=kind)
            if kind == "PodList" or (kind == "" and isinstance(value, Mapping) and "spec" in value):
                yield FileEvent("pod", value, kind)
            elif kind in ("EventList", "") and is_pod_event(value):
                yield FileEvent("event", value, kind)
