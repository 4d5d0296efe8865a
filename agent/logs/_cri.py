"""The CRI container log line format.

Every record the runtime writes is one ``\\n``-terminated line::

    <RFC3339Nano> <stdout|stderr> <tags> <content>

The first tag is ``F`` (the record ends an output line) or ``P`` (the output
line was longer than the runtime's buffer and continues in the next record of
the same stream); further tags may follow after ``:``. containerd writes UTC
with a ``Z`` and trailing zeros of the fraction dropped; CRI-O writes local
time with nine fraction digits and a numeric offset.

Part of the log adapter: imports the standard library only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, NamedTuple

Stream = Literal["stdout", "stderr", "unknown"]

# How much of one output line is kept: its first 16 KiB. A line is a unit
# an application prints; one of megabytes (a dump of binary data, a line
# never ended) would otherwise be held, decoded and escaped whole (six bytes
# per control character in JSON) for every request that shows it.
MAX_LINE_BYTES = 16 * 1024

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
    newline while the runtime is still writing it. ``cut`` is True when the
    line was longer than ``MAX_LINE_BYTES`` and ``text`` is its beginning.
    """

    at: datetime | None
    stream: Stream
    text: str
    partial: bool = False
    cut: bool = False


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


def head(content: bytes, limit: int = MAX_LINE_BYTES) -> tuple[bytes, bool]:
    """The first ``limit`` bytes of a line, not splitting a UTF-8 character; and whether cut."""
    if len(content) <= limit:
        return content, False
    end = limit
    # Back up to the start of the character the cut falls in, if it does.
    for back in range(1, 4):
        byte = content[end - back]
        if byte & 0xC0 != 0x80:  # ASCII or the lead byte of a sequence
            size = 2 if byte >> 5 == 0b110 else 3 if byte >> 4 == 0b1110 else 4
            if byte >= 0xC0 and size > back:
                end -= back
            break
    return content[:end], True


def line_of(at: datetime | None, stream: Stream, content: bytes, partial: bool) -> LogLine:
    """One output line from its joined content, cut to ``MAX_LINE_BYTES``."""
    kept, cut = head(content)
    return LogLine(at, stream, decode(kept), partial, cut)


def malformed(raw: bytes, *, partial: bool = False) -> LogLine:
    return line_of(None, "unknown", raw, partial)


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
            out.append(line_of(rec.at, rec.stream, rec.content, unfinished))
        else:
            del pending[rec.stream]
            held.chunks.append(rec.content)
            out.append(line_of(held.at, rec.stream, b"".join(held.chunks), unfinished))
    still_open = sorted(pending.values(), key=lambda o: o.last_record)
    for inserted, held in enumerate(still_open):
        line = line_of(held.at, held.stream, b"".join(held.chunks), True)
        out.insert(held.slot + inserted, line)
    return out


@dataclass(slots=True)
class _Open:
    at: datetime
    stream: Stream
    chunks: list[bytes]
    slot: int = 0
    last_record: int = 0
