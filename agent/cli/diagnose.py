"""Diagnose pods from what people paste, without a node: ``podlens diagnose -f FILE``.

``-f`` takes a Pod or a List of Pods (``kubectl get pod -o yaml|json``,
several ``---`` documents too), the pieces of one people paste instead (a
``status:`` block, its fields alone, a ``containerStatuses`` list, one
container status, a pod without spec or without a name), or ``kubectl
describe pod`` text of one or many pods. ``--events`` adds events:
``kubectl get events`` as a table (any layout), ``-o yaml`` or ``-o json``;
they are matched to each pod by name, namespace and UID, as the API does.
``--dump DIR`` reads a ``kubectl cluster-info dump`` and diagnoses every
pod in it with its events (and its log), most severe first.

Whatever the input, the rules are the same as on a node; a pod read from a
fragment carries what its source lacked (``ApiPod.gaps``) and the answer
says so (``input``, ``partial``). Only the API's view is available here,
so the rules that need the node (runtime mismatches, listening ports,
image presence, OOM counters, Service lookups) say nothing or "not checked".

The wiring layer: imports ``_report``, ``pastes``, the rules, the domain, the errors and
``agent.kube.convert``; nothing that reaches a node or a cluster.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from agent.cli._report import pod_report, severity_order
from agent.cli.pastes import (
    SHAPE_WORDS,
    Assembled,
    EventsInput,
    PodInput,
    assemble,
    load_documents,
    read_events,
    read_pods,
)
from agent.cli.pastes._events import core_event
from agent.cli.pastes.dump import (
    DumpLayout,
    find_dump,
    namespace_events,
    namespace_pods,
    pod_logs,
    stream_file,
)
from agent.diagnose._types import DEFAULT_THRESHOLDS, ContainerLogs, Thresholds
from agent.domain.kubemodel import ApiEvent, ApiPod
from agent.domain.severity import SEVERITY_RANK
from agent.errors import InvalidInput
from agent.kube.convert import event_from_dict, parse_time, pod_from_dict

__all__ = ["diagnose_documents", "diagnose_dump", "load_documents", "main"]

_PROG = "podlens diagnose"
# Log lines kept per container of a dumped pod with findings; the rules show fewer.
_DUMP_LOG_LINES = 20


# --------------------------------------------------------------------------
# Pastes
# --------------------------------------------------------------------------


def _pod_input(a: Assembled) -> dict[str, Any] | None:
    """What the answer says about how one pod was read; None for a whole object."""
    gaps = a.pod.gaps
    if gaps is None and not a.notes:
        return None
    out: dict[str, Any] = {"shape": a.source.shape}
    if a.source.where:
        out["where"] = a.source.where
    out["partial"] = gaps is not None
    if gaps is not None:
        out["missing"] = list(gaps.missing)
        out["inferred"] = [*gaps.inferred, *a.notes]
    elif a.notes:
        out["inferred"] = list(a.notes)
    return out


def _summary(pods: PodInput, events: EventsInput | None) -> dict[str, Any]:
    out: dict[str, Any] = {"shape": pods.shape, "recognised": pods.recognised}
    if events is not None:
        out["events"] = events.recognised
    notes = [*pods.notes, *(events.notes if events is not None else ())]
    if notes:
        out["notes"] = notes
    return out


def _aware(now: datetime) -> datetime:
    return now if now.tzinfo is not None else now.replace(tzinfo=UTC)


def diagnose_documents(
    pod_text: str,
    events_text: str | None,
    now: datetime,
    *,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> dict[str, Any]:
    """Findings for the pods in ``pod_text``; ``InvalidInput`` when the input cannot be used.

    One pod gives ``{"namespace", "name", "status", "ready", "restarts",
    "findings"}``; a List, several documents or several described pods give
    ``{"pods": [...]}``. Anything but whole Pod objects and Event objects
    adds ``input``: the shape recognised and, per pod read from a fragment,
    ``partial``, what was missing and what was inferred.
    """
    when = _aware(now)
    pods = read_pods(pod_text, when)
    events = read_events(events_text, when) if events_text and events_text.strip() else None
    assembled = assemble(pods.pods, events.events if events is not None else [])
    classic = pods.classic and (events is None or events.classic)
    reports: list[dict[str, Any]] = []
    for a in assembled:
        report = pod_report(a.pod, a.events, when, thresholds)
        if a.pod.partial:
            report["partial"] = True
        if (read := _pod_input(a)) is not None:
            report["input"] = read
        reports.append(report)
    if pods.single and len(reports) == 1:
        result = reports[0]
        if not classic or "input" in result:
            result["input"] = {**_summary(pods, events), **result.get("input", {})}
        return result
    out: dict[str, Any] = {"pods": reports}
    if not classic:
        out["input"] = _summary(pods, events)
    return out


# --------------------------------------------------------------------------
# Dumps
# --------------------------------------------------------------------------


def _container_logs(
    pod: ApiPod, tails: Mapping[str, Sequence[str]], source: str
) -> dict[str, ContainerLogs]:
    """The dump's log of each container, as the current or the last attempt's.

    ``kubectl logs`` (which the dump ran) shows a waiting container's last
    attempt: while it backs off that is what ``--previous`` would show.
    """
    out: dict[str, ContainerLogs] = {}
    for name, lines in tails.items():
        status = pod.status_for(name)
        if status is not None and status.state.is_waiting:
            out[name] = ContainerLogs(previous=tuple(lines), previous_source=source)
        else:
            out[name] = ContainerLogs(current=tuple(lines), source=source)
    return out


class _DumpRun:
    """The reports of one dump, built pod by pod; only reports are kept."""

    def __init__(self, layout: DumpLayout, now: datetime, th: Thresholds) -> None:
        self.layout = layout
        self.now = now
        self.th = th
        self.reports: list[dict[str, Any]] = []
        self.unreadable: list[dict[str, Any]] = []
        self.namespaces: set[str] = set()

    def event(self, item: Mapping[str, Any], where: str) -> ApiEvent | None:
        """One dumped event converted; None (and listed as unreadable) when it cannot be."""
        try:
            return event_from_dict(core_event(item))
        except InvalidInput as exc:
            self.unreadable.append({"where": where, "error": exc.message})
            return None

    def pod(self, item: Any, where: str) -> ApiPod | None:
        """One dumped pod converted; None (and listed as unreadable) when it cannot be."""
        try:
            return pod_from_dict(item)
        except InvalidInput as exc:
            self.unreadable.append({"where": where, "error": exc.message})
            return None

    def report(
        self, pod: ApiPod, events: tuple[ApiEvent, ...], logs: Mapping[str, Sequence[str]]
    ) -> dict[str, Any]:
        """The pod's answer, with the dump's log lines of its containers when there are some."""
        if self.layout.form == "directory":
            source = f"{pod.namespace}/{pod.name}/logs.txt of the dump"
        else:
            source = f"the dump's log section for {pod.namespace}/{pod.name}"
        by_container = _container_logs(pod, logs, source) if logs else None
        return pod_report(pod, events, self.now, self.th, by_container)

    def directory(self) -> None:
        """Every namespace of a dump directory: its pod events first, then its pods."""
        root = self.layout.root
        for ns in self.layout.namespaces:
            self.namespaces.add(ns.name)
            by_pod: dict[str, list[ApiEvent]] = {}
            for i, item in enumerate(namespace_events(ns)):
                ev = self.event(item, f"{ns.events}: item {i}")
                if ev is not None:
                    by_pod.setdefault(ev.involved_name, []).append(ev)
            for i, item in enumerate(namespace_pods(ns)):
                pod = self.pod(item, f"{ns.pods}: item {i}")
                if pod is None:
                    continue
                events = tuple(by_pod.get(pod.name, ()))
                report = self.report(pod, events, {})
                if report["findings"]:
                    # Only a pod with something to explain is worth its log.
                    tails = pod_logs(root, ns.name, pod.name, _DUMP_LOG_LINES)
                    if tails:
                        report = self.report(pod, events, tails)
                self.reports.append(report)

    def file(self) -> None:
        """A dump saved from stdout, read in order: events, pods, then their log sections."""
        events: dict[tuple[str, str], list[ApiEvent]] = {}
        # Pods with findings wait for their log sections, which follow the PodList.
        pending: dict[tuple[str, str], tuple[ApiPod, int]] = {}
        tails: dict[tuple[str, str], dict[str, list[str]]] = {}

        def flush() -> None:
            """Give the waiting pods their log lines and answer them again."""
            for key, (pod, index) in pending.items():
                logs = {c: lines[-_DUMP_LOG_LINES:] for c, lines in tails.get(key, {}).items()}
                if logs:
                    self.reports[index] = self.report(pod, tuple(events.get(key, ())), logs)
            pending.clear()
            tails.clear()

        n = 0
        for piece in stream_file(self.layout.root):
            if piece.what == "list" and piece.kind == "EventList":
                flush()
                events.clear()
            elif piece.what == "event":
                ev = self.event(piece.value, f"{self.layout.root}: event {n}")
                if ev is not None:
                    key = (ev.involved_namespace or ev.namespace, ev.involved_name)
                    events.setdefault(key, []).append(ev)
            elif piece.what == "pod":
                n += 1
                pod = self.pod(piece.value, f"{self.layout.root}: pod {n}")
                if pod is None:
                    continue
                self.namespaces.add(pod.namespace)
                key = (pod.namespace, pod.name)
                report = self.report(pod, tuple(events.get(key, ())), {})
                if report["findings"]:
                    pending[key] = (pod, len(self.reports))
                self.reports.append(report)
            elif piece.what == "log" and piece.log is not None:
                ns, name, container, line = piece.log
                if (ns, name) in pending:
                    lines = tails.setdefault((ns, name), {}).setdefault(container, [])
                    lines.append(line)
                    if len(lines) > 2 * _DUMP_LOG_LINES:
                        del lines[:-_DUMP_LOG_LINES]
        flush()


def diagnose_dump(
    path: str | Path, now: datetime, *, thresholds: Thresholds = DEFAULT_THRESHOLDS
) -> dict[str, Any]:
    """Findings for every pod of a ``kubectl cluster-info dump``, the most severe pods first."""
    layout = find_dump(Path(path))
    run = _DumpRun(layout, _aware(now), thresholds)
    if layout.form == "directory":
        run.directory()
    else:
        run.file()
    run.reports.sort(key=severity_order)
    by_severity = dict.fromkeys(SEVERITY_RANK, 0)
    for report in run.reports:
        if report["findings"]:
            by_severity[report["findings"][0]["severity"]] += 1
    out: dict[str, Any] = {
        "input": {
            "shape": "dump",
            "recognised": layout.recognised,
            "namespaces": len(run.namespaces),
        },
        "summary": {
            "pods": len(run.reports),
            "with_findings": sum(1 for r in run.reports if r["findings"]),
            "by_worst_severity": by_severity,
        },
        "pods": run.reports,
    }
    if run.unreadable:
        out["unreadable"] = run.unreadable
    return out


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """Exit 2 with one line."""
        # One line, like the other input errors, instead of usage + message.
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def _shapes_help() -> str:
    return "; ".join(
        words for key, words in SHAPE_WORDS.items() if key not in ("pod-list", "mixed")
    )


def _parser() -> _Parser:
    p = _Parser(
        prog=_PROG,
        description="Explain what is wrong with pods from what was saved or pasted, without "
        "a node. Prints JSON findings. -f reads: " + _shapes_help() + ".",
    )
    p.add_argument(
        "-f",
        "--filename",
        help="a Pod or List of Pods (YAML or JSON), a piece of one (status:, "
        "containerStatuses, a container status), or kubectl describe pod text; - reads stdin",
    )
    p.add_argument(
        "--events",
        help="events for those pods: kubectl get events (a table, -o yaml or -o json); "
        "- reads stdin",
    )
    p.add_argument(
        "--dump",
        metavar="DIR",
        help="a kubectl cluster-info dump (the --output-directory, JSON or YAML, or the "
        "JSON it prints to stdout saved to a file): every pod with its events",
    )
    p.add_argument(
        "--now",
        help="the time to judge durations against, RFC 3339 (default: the current time); "
        "for saved output, when it was saved: the ages in describe and event tables count "
        "back from it",
    )
    return p


def _read(name: str) -> str:
    if name == "-":
        return sys.stdin.read()
    try:
        return Path(name).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"cannot read {name}: no such file") from None
    except IsADirectoryError:
        raise InvalidInput(
            f"cannot read {name}: a directory (a cluster-info dump is read with --dump)"
        ) from None
    except UnicodeDecodeError:
        raise InvalidInput(f"cannot read {name}: not UTF-8 text") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read {name}: {exc.strerror or exc}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """``podlens diagnose``: 0 with the findings on stdout, 2 on unusable input.

    ``argv`` are the arguments after ``diagnose`` (a leading ``diagnose`` is
    skipped, so the whole command line may be passed too).
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["diagnose"]:
        args_list = args_list[1:]
    parser = _parser()
    try:
        args = parser.parse_args(args_list)
        if args.dump is None and args.filename is None:
            parser.error("the following arguments are required: -f/--filename")
        if args.dump is not None and (args.filename is not None or args.events is not None):
            parser.error("--dump reads pods and events from the dump: no -f or --events with it")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    try:
        if args.filename == "-" and args.events == "-":
            raise InvalidInput("only one of -f and --events can read standard input")
        now = datetime.now(UTC)
        if args.now:
            parsed = parse_time(args.now, "--now")
            if parsed is None:
                raise InvalidInput("--now: empty time")
            now = parsed
        if args.dump is not None:
            result = diagnose_dump(args.dump, now)
        else:
            pod_text = _read(args.filename)
            events_text = _read(args.events) if args.events else None
            result = diagnose_documents(pod_text, events_text, now)
    except InvalidInput as exc:
        print(f"{_PROG}: {exc.message}".replace("\n", " "), file=sys.stderr)
        return 2
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
