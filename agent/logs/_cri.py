"""The CRI container log line format.

Every record the runtime writes is one ``\\n``-terminated line::

    <RFC3339Nano> <stdout|stderr> <tags> <content>

The first tag is ``F`` (the record ends an output line) or ``P`` (the output
line was longer than the runtime's buffer and continues in the next record of
the same stream); further tags may follow after ``:``. containerd writes UTC
with a ``Z`` and trailing zeros of the fraction dropped; CRI-O writes local
time with nine fraction digits and a numeric offset.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, NamedTuple

Stream = Literal["stdout", "stderr", "unknown"]

# Strict on purpose: anything else is kept as a malformed line with its text,
# so a stricter parser loses nothing and never guesses.
# Seconds, up to six fraction digits (what Python keeps), the rest, the zone.
_TIMESTAMP = re.compile(
    rb"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?)(?:(?<=\.\d{6})\d{1,3})?"
    rb"(Z|[+-]\d{2}:\d{2})"
)
_TAGS = re.compile(rb"[FP](?::[^ ]*)?")


@dataclass(frozen=True, slots=True)
class LogLine:
    """One output line of a container, its partial records already joined.

    ``at`` is the time of the line's first record (None for a malformed
    line); ``partial`` is True when the line has not been finished yet: its
    last record is a ``P`` at the end of the log, or the file ends without a
    newline while the runtime is still writing it.
    """

    at: datetime | None
    stream: Stream
    text: str
    partial: bool = False


class Record(NamedTuple):
    at: datetime
    stream: Stream
    partial: bool
    content: bytes


def parse_timestamp(raw: bytes) -> datetime | None:
    """An aware datetime, or None when ``raw`` is not RFC 3339 as runtimes write it.

    Python keeps microseconds, so nanosecond digits beyond the sixth are cut.
    """
    match = _TIMESTAMP.fullmatch(raw)
    if match is None:
        return None
    seconds, zone = match.groups()
    try:
        return datetime.fromisoformat((seconds + zone).decode("ascii"))
    except ValueError:  # month 13, hour 25, ...
        return None


def parse_record(raw: bytes) -> Record | None:
    """One record without its newline; None when it is not in the CRI format."""
    first = raw.find(b" ")
    if first < 0:
        return None
    second = raw.find(b" ", first + 1)
    if second < 0:
        return None
    stream_raw = raw[first + 1 : second]
    stream: Stream
    if stream_raw == b"stdout":
        stream = "stdout"
    elif stream_raw == b"stderr":
        stream = "stderr"
    else:
        return None
    third = raw.find(b" ", second + 1)
    # A record with empty content may lack the space after the tags.
    tags = raw[second + 1 :] if third < 0 else raw[second + 1 : third]
    if _TAGS.fullmatch(tags) is None:
        return None
    at = parse_timestamp(raw[:first])
    if at is None:
        return None
    content = b"" if third < 0 else raw[third + 1 :]
    return Record(at, stream, tags[:1] == b"P", content)


def decode(content: bytes) -> str:
    return content.decode("utf-8", errors="replace")


def malformed(raw: bytes, *, partial: bool = False) -> LogLine:
    return LogLine(at=None, stream="unknown", text=decode(raw), partial=partial)


def parse_log(data: bytes) -> list[LogLine]:
    """Every line of a whole CRI log held in memory, oldest first.

    ``P`` records are joined per stream until that stream's ``F``; a line
    takes its place in the output where its last record is, so lines of the
    other stream written in between come first. Lines still open at the end
    are returned with ``partial=True``, as is a last record without a
    newline.
    """
    if not data:
        return []
    records = data.split(b"\n")
    terminated_last = records[-1] == b""
    if terminated_last:
        records.pop()
    # A line takes its slot when its F arrives; lines still open at the end
    # go after whatever was emitted before their last record.
    out: list[LogLine] = []
    pending: dict[Stream, _Open] = {}
    last = len(records) - 1
    for index, raw in enumerate(records):
        unfinished = index == last and not terminated_last
        rec = parse_record(raw)
        if rec is None:
            out.append(malformed(raw, partial=unfinished))
            continue
        held = pending.get(rec.stream)
        if rec.partial:
            if held is None:
                held = pending[rec.stream] = _Open(rec.at, rec.stream, [])
            held.chunks.append(rec.content)
            held.slot = len(out)
            held.last_record = index
            continue
        if held is None:
            out.append(LogLine(rec.at, rec.stream, decode(rec.content), unfinished))
        else:
            del pending[rec.stream]
            held.chunks.append(rec.content)
            out.append(LogLine(held.at, rec.stream, decode(b"".join(held.chunks)), unfinished))
    still_open = sorted(pending.values(), key=lambda o: o.last_record)
    for inserted, held in enumerate(still_open):
        line = LogLine(held.at, held.stream, decode(b"".join(held.chunks)), True)
        out.insert(held.slot + inserted, line)
    return out


@dataclass(slots=True)
class _Open:
    at: datetime
    stream: Stream
    chunks: list[bytes]
    slot: int = 0
    last_record: int = 0
