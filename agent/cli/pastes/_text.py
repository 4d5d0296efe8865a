"""Reading what kubectl prints for people: ages, Go time formats, aligned tables.

Ages ("5m", "2m30s", "3d4h", "<unknown>") are ``duration.HumanDuration``
read back; they are relative to when the command ran, which the caller
supplies (``--now``). Times in ``kubectl describe`` are Go's RFC1123Z
("Mon, 02 Jan 2006 15:04:05 -0700"), or RFC1123 with a zone name in old
releases. Tables are aligned by Go's tabwriter, so a header's words start
where their cells start.

Part of the wiring layer: imports the standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

__all__ = [
    "Age",
    "Column",
    "columns_of",
    "parse_age",
    "parse_age_cell",
    "parse_go_time",
    "parse_source",
    "shown",
    "split_row",
]

_AGE = re.compile(r"(?:(\d+)y)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?")
_AGE_CELL = re.compile(r"(?P<last>\S+)(?:\s+\(x(?P<count>\d+)\s+over\s+(?P<first>\S+)\))?")
_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    )
}
_GO_TIME = re.compile(
    r"(?:[A-Z][a-z]{2},\s+)?(?P<d>\d{1,2})\s+(?P<mon>[A-Z][a-z]{2})\s+(?P<y>\d{4})\s+"
    r"(?P<H>\d{2}):(?P<M>\d{2}):(?P<S>\d{2})\s+(?P<zone>[+-]\d{4}|[A-Z]{1,5})"
)
_RFC3339 = re.compile(
    r"(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})[Tt ](?P<H>\d{2}):(?P<M>\d{2}):(?P<S>\d{2})"
    r"(?:\.\d+)?(?P<zone>[Zz]|[+-]\d{2}:\d{2})"
)
_UTC_NAMES = frozenset({"UTC", "GMT", "Z", "UT"})


@dataclass(frozen=True, slots=True)
class Age:
    """An age cell: when last seen, how many times, since when (each as a time ago)."""

    last: timedelta | None
    count: int | None = None
    first: timedelta | None = None


def parse_age(text: str) -> timedelta | None:
    """ "5m", "2m30s", "3d4h", "118s" as a duration; None for "<unknown>", "<invalid>" or noise."""
    text = text.strip()
    if not text or text.startswith("<"):
        return None
    m = _AGE.fullmatch(text)
    if m is None or not any(m.groups()):
        return None
    y, d, h, mi, s, ms = (int(g) if g else 0 for g in m.groups())
    return timedelta(days=365 * y + d, hours=h, minutes=mi, seconds=s, milliseconds=ms)


def parse_age_cell(text: str) -> Age | None:
    """ "3m (x5 over 10m)" or "10m"; None when the cell is not an age at all."""
    m = _AGE_CELL.fullmatch(text.strip())
    if m is None:
        return None
    last_text = m.group("last")
    if not last_text.startswith("<") and parse_age(last_text) is None:
        return None
    count = int(m.group("count")) if m.group("count") else None
    first = parse_age(m.group("first")) if m.group("first") else None
    return Age(parse_age(last_text), count, first)


def parse_go_time(text: str) -> tuple[datetime | None, str | None]:
    """A time as describe prints it, and a note when its zone had to be guessed.

    Zone names other than UTC/GMT are not offsets (Go prints the local
    abbreviation), so they are read as UTC and said to be.
    """
    text = text.strip()
    m = _GO_TIME.fullmatch(text)
    if m is not None:
        zone = m.group("zone")
        note = None
        if zone[0] in "+-":
            sign = -1 if zone[0] == "-" else 1
            tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5])))
        else:
            tz = UTC
            if zone not in _UTC_NAMES:
                note = f"time zone {zone} is not an offset; its times were read as UTC"
        month = _MONTHS.get(m.group("mon"))
        if month is None or int(m.group("y")) <= 1:
            # Go prints an unset time as year 1; the API leaves it out.
            return None, None
        try:
            parsed = datetime(
                int(m.group("y")),
                month,
                int(m.group("d")),
                int(m.group("H")),
                int(m.group("M")),
                int(m.group("S")),
                tzinfo=tz,
            )
        except ValueError:
            return None, None
        return parsed.astimezone(UTC), note
    m = _RFC3339.fullmatch(text)
    if m is not None:
        zone = m.group("zone")
        tz = UTC
        if zone not in ("Z", "z"):
            sign = -1 if zone[0] == "-" else 1
            tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
        try:
            parsed = datetime(
                int(m.group("y")),
                int(m.group("m")),
                int(m.group("d")),
                int(m.group("H")),
                int(m.group("M")),
                int(m.group("S")),
                tzinfo=tz,
            )
        except ValueError:
            return None, None
        return parsed.astimezone(UTC), None
    return None, None


# --------------------------------------------------------------------------
# Aligned tables
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Column:
    """One column of an aligned table: its header text and where its cells start."""

    name: str
    start: int


_HEADER_CELL = re.compile(r"\S+(?: \S+)*")


def columns_of(header: str) -> list[Column]:
    """The columns of a header line; words one space apart belong to one header ("LAST SEEN")."""
    return [Column(m.group(0), m.start()) for m in _HEADER_CELL.finditer(header.rstrip())]


def split_row(row: str, columns: Sequence[Column]) -> list[str] | None:
    """The cells of ``row`` under ``columns``; None when the row does not fit them.

    Cells are cut where the header's columns start. When the paste lost its
    alignment (chat tools squeeze spaces), cells are split on runs of two or
    more spaces instead, the surplus joined into the last column.
    """
    row = row.rstrip()
    if not row.strip():
        return None
    starts = [c.start for c in columns]
    # A cut is sound when it falls on a space, never inside a word.
    aligned = all(s >= len(row) or row[s - 1] == " " for s in starts[1:]) and (
        row[: starts[0]].strip() == ""
    )
    if aligned:
        cells = [row[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        if cells[0]:
            return cells
    parts = re.split(r"\s{2,}", row.strip())
    if len(parts) < len(columns):
        return None
    head = parts[: len(columns) - 1]
    return [*head, "  ".join(parts[len(columns) - 1 :])]


def parse_source(text: str) -> dict[str, str]:
    """An event's source as printed: "kubelet, worker-1", "kubelet", or "{kubelet worker-1}"."""
    text = text.strip().strip("{}").strip()
    if not text:
        return {}
    if "," in text:
        component, _, host = text.partition(",")
    else:
        component, _, host = text.partition(" ")
    out = {"component": component.strip()}
    if host.strip():
        out["host"] = host.strip()
    return out


def shown(value: object, limit: int = 40) -> str:
    """A value from the input as an error message quotes it: plain when it is a plain word.

    Anything with line breaks, control characters or great length is shown
    as a short ``repr``, so a message stays one readable line.
    """
    text = str(value)
    if text and len(text) <= limit and text.isprintable() and text.strip() == text:
        return text
    quoted = repr(text)
    return quoted if len(quoted) <= limit else quoted[: limit - 4] + "...'"
