"""Time values as the agent reads and writes them: naive means UTC, output is RFC 3339 with Z.

Owns the two conversions every layer needs; imports the standard library only.
"""

from __future__ import annotations

from datetime import UTC, datetime


def aware(t: datetime) -> datetime:
    """``t`` with a time zone; a naive time is taken as UTC (the API server's times are)."""
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def iso(t: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, as the API server writes times."""
    return aware(t).astimezone(UTC).isoformat().replace("+00:00", "Z")


def iso_or_none(t: datetime | None) -> str | None:
    """``iso(t)``, or None for a missing time."""
    return None if t is None else iso(t)
