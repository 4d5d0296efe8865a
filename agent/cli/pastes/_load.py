"""JSON and YAML as people paste them: one or many documents, odd YAML included.

PyYAML's safe loader turns unquoted timestamps into ``datetime`` (or ``date``)
objects; here every timestamp becomes the RFC 3339 string the API server
would have written, so the converters see one shape. Tabs used for
indentation (YAML forbids them) are read as spaces when that is the only
problem, and the answer says so. Anchors, aliases, folded and literal
strings and non-ASCII text need nothing special.

Part of the wiring layer: imports PyYAML, the domain's times and the errors only.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from typing import Any

import yaml

from agent.domain.times import iso
from agent.errors import InvalidInput

__all__ = ["TAB_NOTE", "YamlLoader", "load_documents", "load_with_notes", "load_yaml_text"]

_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_LEADING_TABS = re.compile(r"^(\t+)", re.M)
TAB_NOTE = "tabs in the indentation were read as {n} spaces each"


class YamlLoader(_BaseLoader):  # type: ignore[misc]
    """The safe loader, with timestamps kept as RFC 3339 strings."""


def _timestamp(loader: Any, node: yaml.ScalarNode) -> str:
    value: object = yaml.SafeLoader.construct_yaml_timestamp(loader, node)
    if isinstance(value, _dt.datetime):
        return iso(value)
    if isinstance(value, _dt.date):
        # A bare date is midnight UTC: the API never writes one, a hand does.
        return iso(_dt.datetime(value.year, value.month, value.day, tzinfo=_dt.UTC))
    return str(value)


YamlLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp)


def _yaml_error(exc: yaml.YAMLError, what: str) -> InvalidInput:
    mark = getattr(exc, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return InvalidInput(f"{what}: neither JSON nor YAML{where}: {problem}")


def _load_all(text: str) -> list[Any]:
    return [d for d in yaml.load_all(text, Loader=YamlLoader) if d is not None]


def _expand_leading_tabs(text: str, width: int) -> str:
    return _LEADING_TABS.sub(lambda m: " " * (width * len(m.group(1))), text)


def load_yaml_text(text: str, what: str) -> tuple[list[Any], list[str]]:
    """The YAML documents in ``text`` and notes on how it was read; ``InvalidInput`` if none."""
    try:
        return _load_all(text), []
    except yaml.YAMLError as exc:
        first = exc
    except RecursionError:
        raise InvalidInput(f"{what}: the document is nested too deeply to read") from None
    if _LEADING_TABS.search(text):
        # Editors and chat tools turn indentation into tabs; YAML forbids them.
        # The first width that gives a readable document wins.
        for width in (2, 4, 8):
            spaced = _expand_leading_tabs(text, width)
            try:
                return _load_all(spaced), [TAB_NOTE.format(n=width)]
            except (yaml.YAMLError, RecursionError):
                continue
    raise _yaml_error(first, what) from None


def load_documents(text: str, what: str) -> list[Any]:
    """The documents in ``text`` (JSON, or YAML with one or more documents)."""
    docs, _ = load_with_notes(text, what)
    return docs


def load_with_notes(text: str, what: str) -> tuple[list[Any], list[str]]:
    """``load_documents`` plus notes on anything read generously (tabs)."""
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise InvalidInput(f"{what}: the input is empty")
    try:
        return [json.loads(text)], []
    except ValueError:
        pass
    except RecursionError:
        raise InvalidInput(f"{what}: the document is nested too deeply to read") from None
    docs, notes = load_yaml_text(text, what)
    if not docs:
        raise InvalidInput(f"{what}: the input holds no document")
    return docs, notes
