"""Items of large List files, one at a time, without reading the file whole.

``kubectl cluster-info dump`` writes one PodList per namespace; a namespace
with thousands of pods makes a file of hundreds of megabytes, which
``json.load`` would turn into several times that in Python objects. Here
only one item is held at a time:

* JSON: the top-level objects are scanned key by key; the values of
  ``items`` are decoded one by one with ``raw_decode`` as the file is read
  in chunks. Several top-level values in a row (the dump written to
  standard output) and the log sections between them are read too.
* YAML: kubectl writes a List with its keys sorted and ``items`` as a
  sequence at the left margin (``- `` then two-space continuation lines),
  so each item is cut out by its lines and loaded alone.

Part of the wiring layer: imports ``_load``, PyYAML and the errors only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, TextIO

import yaml

from agent.cli.pastes._load import YamlLoader
from agent.errors import InvalidInput

__all__ = ["LOG_START", "StreamItem", "json_stream", "yaml_list_items"]

LOG_START = "==== START logs for container "
_LOG_END = "==== END logs for container "
_CHUNK = 1 << 20

# (what, list kind, value): "item" of a List whose kind is known (or ""),
# "value" for a top-level value that is no List, "log" for one log line of a
# stdout dump (value: (header line, line)).
StreamItem = tuple[str, str, Any]


class _Reader:
    """A text file read in chunks, with a cursor; consumed text is dropped."""

    def __init__(self, f: TextIO, what: str) -> None:
        self.f = f
        self.what = what
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.decoder = json.JSONDecoder()

    def more(self, at_least: int = _CHUNK) -> bool:
        """Read another chunk (at least ``at_least`` characters); False at the end."""
        if self.eof:
            return False
        if self.pos > _CHUNK:
            self.buf = self.buf[self.pos :]
            self.pos = 0
        data = self.f.read(max(_CHUNK, at_least))
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def peek(self) -> str:
        """The next character that is not white space; "" at the end."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in " \t\r\n":
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.more():
                return ""

    def expect(self, char: str) -> None:
        """Step over ``char``, the next character that is not white space; refuse anything else."""
        if self.peek() != char:
            found = self.peek() or "the end of the file"
            raise InvalidInput(f"{self.what}: expected {char!r}, found {found!r}")
        self.pos += 1

    def value(self) -> Any:
        """The JSON value at the cursor, reading more of the file until it is whole."""
        self.peek()
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                # Cut off by the end of the buffer, or really broken: more text decides.
                if self.more(len(self.buf) - self.pos):
                    continue
                raise InvalidInput(f"{self.what}: not JSON: {exc.msg}") from None
            except RecursionError:
                raise InvalidInput(f"{self.what}: a value is nested too deeply") from None
            self.pos = end
            return value

    def line(self) -> str:
        """The rest of the current line (for log sections between JSON values)."""
        while "\n" not in self.buf[self.pos :] and self.more():
            pass
        end = self.buf.find("\n", self.pos)
        if end < 0:
            end = len(self.buf)
        text = self.buf[self.pos : end]
        self.pos = min(end + 1, len(self.buf))
        return text


def _object(r: _Reader) -> Iterator[StreamItem]:
    """One top-level object: its ``items`` streamed, the rest decoded and yielded at the end."""
    r.expect("{")
    head: dict[str, Any] = {}
    streamed = False
    if r.peek() == "}":
        r.pos += 1
        yield ("value", "", head)
        return
    while True:
        key = r.value()
        if not isinstance(key, str):
            raise InvalidInput(f"{r.what}: an object key is not a string")
        r.expect(":")
        if key == "items" and r.peek() == "[":
            r.pos += 1
            kind = str(head.get("kind", ""))
            streamed = True
            if r.peek() == "]":
                r.pos += 1
            else:
                while True:
                    yield ("item", kind, r.value())
                    sep = r.peek()
                    r.pos += 1
                    if sep == "]":
                        break
                    if sep != ",":
                        raise InvalidInput(f"{r.what}: expected ',' or ']' in items")
        else:
            head[key] = r.value()
        sep = r.peek()
        r.pos += 1
        if sep == "}":
            break
        if sep != ",":
            raise InvalidInput(f"{r.what}: expected ',' or '}}' after key {key!r}")
    if not streamed:
        yield ("value", "", head)


def json_stream(f: TextIO, what: str) -> Iterator[StreamItem]:
    """Every List item and top-level value of a JSON file, and the log lines between them."""
    r = _Reader(f, what)
    while True:
        char = r.peek()
        if not char:
            return
        if char == "{":
            yield from _object(r)
        elif char == "=":
            header = r.line()
            if not header.startswith(LOG_START):
                continue
            while True:
                if r.pos >= len(r.buf) and not r.more():
                    return
                line = r.line()
                if line.startswith(_LOG_END):
                    break
                yield ("log", "", (header, line))
        elif char in '["-0123456789tfn':
            yield ("value", "", r.value())
        else:
            r.line()  # a line of text that is no JSON: "Cluster info dumped to ..."


def yaml_list_items(f: TextIO, what: str) -> Iterator[tuple[str, Any]]:
    """("item", item) for each item of a YAML List file as kubectl writes it, then ("kind", kind).

    A file laid out otherwise is loaded whole, as the one case that cannot
    be streamed, and its items yielded the same way.
    """
    item: list[str] | None = None
    in_items = False
    kind = ""
    for raw in f:
        line = raw.rstrip("\r\n")
        if in_items:
            if line.startswith("- ") or line == "-":
                if item is not None:
                    yield ("item", _load_item(item, what))
                item = [line[2:]]
                continue
            if line.startswith("  ") or not line.strip():
                if item is None:
                    break  # not the layout expected: fall back below
                item.append(line[2:])
                continue
            in_items = False
            if item is not None:
                yield ("item", _load_item(item, what))
                item = None
        if line.startswith("items:"):
            rest = line[len("items:") :].strip()
            if rest in ("", "[]"):
                in_items = rest == ""
                continue
        if line.startswith("kind:"):
            kind = line[len("kind:") :].strip()
    else:
        if item is not None:
            yield ("item", _load_item(item, what))
        yield ("kind", kind)
        return
    # Some other layout: read it whole.
    f.seek(0)
    try:
        doc = yaml.load(f, Loader=YamlLoader)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{what}: not YAML: {str(exc).splitlines()[0]}") from None
    items = doc.get("items") if isinstance(doc, dict) else None
    for entry in items or []:
        yield ("item", entry)
    yield ("kind", str(doc.get("kind", "")) if isinstance(doc, dict) else "")


def _without_managed_fields(lines: list[str]) -> list[str]:
    """An item's lines without ``metadata.managedFields``, which no rule reads.

    It is often the larger part of a pod, and building Python objects is
    what YAML costs. kubectl writes it under ``metadata:`` as a sequence at
    the same indent as the key (``  managedFields:`` then ``  - ...``).
    """
    try:
        start = lines.index("  managedFields:")
    except ValueError:
        return lines
    end = start + 1
    while end < len(lines) and (lines[end].startswith(("  - ", "   ")) or lines[end] == "  -"):
        end += 1
    return [*lines[:start], *lines[end:]]


def _load_item(lines: list[str], what: str) -> Any:
    try:
        return yaml.load("\n".join(_without_managed_fields(lines)), Loader=YamlLoader)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{what}: an item is not YAML: {str(exc).splitlines()[0]}") from None
