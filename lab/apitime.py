"""metav1.Time as the API server writes it: RFC 3339, UTC, whole seconds, a ``Z``.

Owns the one writer and reader of that form that the lab API server, the
lab kubelet and the lab node share, so their times always compare as
strings. Imports the standard library only.
"""

from __future__ import annotations

import calendar
import time

_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def rfc3339(t: float | None = None) -> str:
    """Seconds since the epoch (now when None) as metav1.Time serializes them."""
    return time.strftime(_FORMAT, time.gmtime(time.time() if t is None else t))


def parse_rfc3339(text: str) -> float:
    """Seconds since the epoch of a time ``rfc3339`` wrote; ValueError for another form."""
    return float(calendar.timegm(time.strptime(text, _FORMAT)))


__all__ = ["parse_rfc3339", "rfc3339"]
