"""Diagnose pods from saved documents, without a node: ``podlens diagnose -f pod.yaml``.

Input is what ``kubectl get pod NAME -o yaml`` (or ``-o json``) prints: one
Pod, or a ``List`` of Pods (``kubectl get pods -o yaml``); several YAML
documents separated by ``---`` work too. Events are optional and come from
``kubectl get events -o yaml`` (a ``List``/``EventList`` of core/v1 Events, or
events.k8s.io/v1 Events). Only the API's view is available here, so the rules
that need the node (runtime mismatches, listening ports, image presence, OOM
counters, Service lookups) have nothing to say or say "not checked".
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import yaml

from agent.diagnose._engine import diagnose
from agent.diagnose._types import DEFAULT_THRESHOLDS, DiagnosisInput, Thresholds
from agent.domain.kubemodel import ApiEvent, ApiPod
from agent.domain.podstatus import status_strings
from agent.errors import InvalidInput
from agent.kube.convert import event_from_dict, parse_time, pod_from_dict

__all__ = ["diagnose_documents", "load_documents", "main"]

_PROG = "podlens diagnose"


# --------------------------------------------------------------------------
# Reading documents
# --------------------------------------------------------------------------


def load_documents(text: str, what: str) -> list[Any]:
    """The documents in ``text`` (JSON, or YAML with one or more documents)."""
    if not text.strip():
        raise InvalidInput(f"{what}: the input is empty")
    try:
        return [json.loads(text)]
    except ValueError:
        pass
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InvalidInput(f"{what}: neither JSON nor YAML{where}: {problem}") from None
    if not docs:
        raise InvalidInput(f"{what}: the input holds no document")
    return docs


def _items(
    docs: list[Any], what: str, kind: str
) -> tuple[list[tuple[str, Mapping[str, Any]]], bool]:
    """(path, object) of every ``kind`` object, and whether the input was a single object."""
    out: list[tuple[str, Mapping[str, Any]]] = []
    single = len(docs) == 1
    for n, doc in enumerate(docs):
        prefix = f"document {n + 1}: " if len(docs) > 1 else ""
        if isinstance(doc, list):
            items: Any = doc
            single = False
        elif not isinstance(doc, Mapping):
            raise InvalidInput(
                f"{what}: {prefix}expected a {kind} or a List, got {type(doc).__name__}"
            )
        elif isinstance(doc.get("items"), list) or str(doc.get("kind", "")).endswith("List"):
            items = doc.get("items") or []
            single = False
            if not isinstance(items, list):
                raise InvalidInput(f"{what}: {prefix}items is not a list")
        else:
            out.append((prefix.rstrip(": "), doc))
            continue
        for i, item in enumerate(items):
            path = f"{prefix}items[{i}]"
            if not isinstance(item, Mapping):
                raise InvalidInput(f"{what}: {path} is not an object")
            out.append((path, item))
    return out, single


def _pods(text: str) -> tuple[list[ApiPod], bool]:
    docs = load_documents(text, "pod input")
    items, single = _items(docs, "pod input", "Pod")
    pods: list[ApiPod] = []
    for path, item in items:
        kind = item.get("kind")
        if kind is not None and kind != "Pod":
            where = f"{path} is" if path else "it is"
            raise InvalidInput(
                f"pod input: {where} a {kind}, not a Pod; give `kubectl get pod -o yaml` output"
            )
        try:
            pods.append(pod_from_dict(item))
        except InvalidInput as exc:
            raise InvalidInput(f"pod input: {path + ': ' if path else ''}{exc.message}") from None
    if not pods:
        raise InvalidInput("pod input: the List holds no Pod")
    return pods, single


def _core_event(d: Mapping[str, Any]) -> Mapping[str, Any]:
    """An events.k8s.io/v1 Event in core/v1 shape (``regarding`` -> ``involvedObject``...)."""
    if not str(d.get("apiVersion", "")).startswith("events.k8s.io/"):
        return d
    series = d.get("series") if isinstance(d.get("series"), Mapping) else {}
    source = d.get("deprecatedSource") if isinstance(d.get("deprecatedSource"), Mapping) else {}
    return {
        "kind": "Event",
        "metadata": d.get("metadata") or {},
        "involvedObject": d.get("regarding") or {},
        "reason": d.get("reason"),
        "message": d.get("note"),
        "type": d.get("type"),
        "count": d.get("deprecatedCount"),
        "firstTimestamp": d.get("deprecatedFirstTimestamp"),
        "lastTimestamp": d.get("deprecatedLastTimestamp"),
        "eventTime": d.get("eventTime"),
        "series": series,
        "source": source,
        "reportingComponent": d.get("reportingController"),
        "reportingInstance": d.get("reportingInstance"),
    }


def _events(text: str) -> tuple[ApiEvent, ...]:
    docs = load_documents(text, "events input")
    items, _ = _items(docs, "events input", "Event")
    out: list[ApiEvent] = []
    for path, item in items:
        kind = item.get("kind")
        if kind is not None and kind != "Event":
            raise InvalidInput(f"events input: {path or 'it'} is a {kind}, not an Event")
        try:
            out.append(event_from_dict(_core_event(item)))
        except InvalidInput as exc:
            raise InvalidInput(
                f"events input: {path + ': ' if path else ''}{exc.message}"
            ) from None
    return tuple(out)


# --------------------------------------------------------------------------
# Diagnosing
# --------------------------------------------------------------------------


def _report(
    pod: ApiPod, events: tuple[ApiEvent, ...], now: datetime, th: Thresholds
) -> dict[str, Any]:
    inp = DiagnosisInput(
        pod=pod,
        events=events,
        node_name=pod.node_name or "",
        now=now,
        api_available=True,
        agent_urls=False,
    )
    strings = status_strings(pod, now)
    return {
        "namespace": pod.namespace,
        "name": pod.name,
        "status": strings.status,
        "ready": strings.ready,
        "restarts": strings.restarts,
        "findings": [f.to_dict() for f in diagnose(inp, thresholds=th)],
    }


def diagnose_documents(
    pod_text: str,
    events_text: str | None,
    now: datetime,
    *,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> dict[str, Any]:
    """Findings for the pods in ``pod_text``; ``InvalidInput`` when the input cannot be used.

    One Pod gives ``{"namespace", "name", "status", "ready", "restarts",
    "findings"}``; a List (or several documents) gives ``{"pods": [...]}``.
    """
    pods, single = _pods(pod_text)
    events = _events(events_text) if events_text is not None and events_text.strip() else ()
    when = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
    reports = [_report(pod, events, when, thresholds) for pod in pods]
    return reports[0] if single and len(reports) == 1 else {"pods": reports}


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, like the other input errors, instead of usage + message.
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def _parser() -> _Parser:
    p = _Parser(
        prog=_PROG,
        description="Explain what is wrong with pods saved as YAML or JSON "
        "(kubectl get pod NAME -o yaml), without a node. Prints JSON findings.",
    )
    p.add_argument(
        "-f",
        "--filename",
        required=True,
        help="a Pod or a List of Pods, YAML or JSON; - reads standard input",
    )
    p.add_argument(
        "--events", help="events for those pods (kubectl get events -o yaml); - reads stdin"
    )
    p.add_argument(
        "--now",
        help="the time to judge durations against, RFC 3339 (default: the current time); "
        "useful for documents saved a while ago",
    )
    return p


def _read(name: str) -> str:
    if name == "-":
        return sys.stdin.read()
    try:
        return Path(name).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"cannot read {name}: no such file") from None
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
    try:
        args = _parser().parse_args(args_list)
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
        pod_text = _read(args.filename)
        events_text = _read(args.events) if args.events else None
        result = diagnose_documents(pod_text, events_text, now)
    except InvalidInput as exc:
        print(f"{_PROG}: {exc.message}".replace("\n", " "), file=sys.stderr)
        return 2
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
