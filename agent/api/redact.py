"""What the read tier may not show: secrets in command lines, and kubectl's copy of a spec.

Command lines are where people put passwords (``--password=...``, a
database URL with its credentials, ``PASSWORD=...`` in a ``sh -c`` script),
and every process of every pod is readable with the plain read permission.
``redact_cmdline`` replaces each value that looks secret with ``***``,
keeping the option names so the command line still reads as what it is;
the full one is for callers who may read logs (``?full_cmdline=true``).

``kubectl.kubernetes.io/last-applied-configuration`` is the whole spec as
last applied, literal ``env`` values included; kubelet copies it onto the
sandbox and the runtime onto each container. No view shows it.

What counts as secret errs on the side of hiding: ``--tls-key-file=/etc/x``
loses its path too. The patterns are linear (each starts only where a word
starts), since a command line may be as long as the kernel allows.

Part of the HTTP edge: imports the standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

MASK = "***"
DROPPED_ANNOTATIONS = frozenset({"kubectl.kubernetes.io/last-applied-configuration"})

# Words that make an option or variable name secret: a whole part of the
# name ("DB_PASSWORD", "--api-key") or, for the unambiguous ones, anywhere in
# it ("dbpassword", "clientSecret").
_SECRET_ANYWHERE = (
    "passw",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "credential",
    "privatekey",
    "authorization",
)
_SECRET_PARTS = frozenset({"pass", "pwd", "pw", "key", "auth", "cred", "creds", "private"})
_PARTS = re.compile(r"[^a-z0-9]+")

# NAME=value, --name=value, -name=value: starts only where a word starts.
_ASSIGNMENT = re.compile(
    r"""(?<![\w.-])(?P<name>-{1,2}[\w.-]+|[A-Za-z_][\w.-]*)=(?P<value>"[^"]*"|'[^']*'|[^\s"';&|]+)"""
)
# --name value (inside one argument: a shell script).
_OPTION_SPACE_VALUE = re.compile(
    r"(?<![\w.-])(?P<name>--?[A-Za-z][\w.-]*)(?P<gap>[ \t]+)"
    r"""(?P<value>"[^"]*"|'[^']*'|[^\s"'\-;&|][^\s"';&|]*)"""
)
# scheme://user:password@host
_URL_CREDENTIALS = re.compile(r"(?<![\w+.-])(?P<head>[A-Za-z][\w+.-]*://[^\s/:@]*):[^\s/@]*@")
# Authorization headers: "Bearer <token>", "Basic <base64>".
_AUTH_SCHEME = re.compile(r"(?i)(?<![\w-])(?P<scheme>bearer|basic)(?P<gap>\s+)[\w.~+/=-]+")


def secret_name(name: str) -> bool:
    """Whether an option or variable name says its value is a secret."""
    lowered = name.lower().lstrip("-")
    if any(word in lowered for word in _SECRET_ANYWHERE):
        return True
    return any(part in _SECRET_PARTS for part in _PARTS.split(lowered))


def _assignment(m: re.Match[str]) -> str:
    return f"{m['name']}={MASK}" if secret_name(m["name"]) else m.group(0)


def _option_space_value(m: re.Match[str]) -> str:
    if not secret_name(m["name"]):
        return m.group(0)
    return f"{m['name']}{m['gap']}{MASK}"


def redact_text(text: str) -> str:
    """One argument (or a script in one) with every secret-looking value masked."""
    text = _URL_CREDENTIALS.sub(lambda m: f"{m['head']}:{MASK}@", text)
    text = _AUTH_SCHEME.sub(lambda m: f"{m['scheme']}{m['gap']}{MASK}", text)
    text = _ASSIGNMENT.sub(_assignment, text)
    return _OPTION_SPACE_VALUE.sub(_option_space_value, text)


def redact_cmdline(argv: Sequence[str]) -> tuple[list[str], bool]:
    """The command line with secrets masked, and whether anything was."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next and not arg.startswith("-"):
            out.append(MASK)
            hide_next = False
            continue
        hide_next = False
        # "--password" then its value as the next argument.
        if arg.startswith("-") and "=" not in arg and secret_name(arg):
            hide_next = True
        out.append(redact_text(arg))
    return out, out != list(argv)


def visible_annotations(annotations: Mapping[str, str]) -> dict[str, str]:
    """Annotations without the ones no view shows."""
    return {k: v for k, v in annotations.items() if k not in DROPPED_ANNOTATIONS}


__all__ = [
    "DROPPED_ANNOTATIONS",
    "MASK",
    "redact_cmdline",
    "redact_text",
    "secret_name",
    "visible_annotations",
]
