"""How much of a message the rules read: its first 4 KiB, before any pattern sees it.

Kubelet's and the runtime's messages are a few hundred characters; the
API server accepts events and statuses far longer than that, and a long
message is the easiest way to make a pattern work hard. What a rule looks
for (an executable, a Secret's name, a failure class) sits at the start.

Part of the rules: imports the standard library only.
"""

from __future__ import annotations

MAX_MESSAGE_CHARS = 4096


def bounded(text: str) -> str:
    """The part of a message the rules match against: at most ``MAX_MESSAGE_CHARS``."""
    return text[:MAX_MESSAGE_CHARS]
