"""What an init container's command waits for.

The classic init containers are shell loops around a probe of something
that another part of the system provides::

    until nslookup myservice; do echo waiting; sleep 2; done
    until wget -qO- http://api:8080/healthz; do sleep 1; done
    while ! nc -z db 5432; do sleep 1; done
    until [ -f /work/ready ]; do sleep 1; done

This module finds those probes (names, URLs, host:port pairs, files) in
``command`` + ``args`` and maps a name to the Service it would resolve to
through the pod's DNS search path (``<ns>.svc.<domain>``, ``svc.<domain>``).
It reads text only; nothing is resolved here.

Part of the rules: imports the standard library only.
"""

from __future__ import annotations

import functools
import ipaddress
import posixpath
import re
import shlex
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

_SHELLS = frozenset({"sh", "bash", "ash", "dash", "zsh", "ksh"})
_SEPARATORS = frozenset({";", "&&", "||", "|", "&", "(", ")", ";;"})
_KEYWORDS = frozenset(
    {"until", "while", "do", "done", "if", "then", "else", "elif", "fi", "!", "exec", "command"}
)
_REDIRECTS = re.compile(r"^[0-9]*[<>]")
# "2>&1", "> /dev/null", ">>log", "&>out": removed before splitting so that
# their file descriptors and targets are not taken for arguments.
_REDIRECTION = re.compile(r"(?<![\w-])(?:\d*>>?|\d*<|&>)&?\s*[^\s;&|()<>]+")
# The pod's own namespace as the Kubernetes docs' init containers read it.
_NS_FILE = re.compile(
    r"\$\(\s*(?:cat\s+|<\s*)/var/run/secrets/kubernetes\.io/serviceaccount/namespace\s*\)"
)
_SUBSTITUTION = re.compile(r"\$\([^()]*\)|`[^`]*`")
# Options of the probe tools that take a separate value.
_VALUED: dict[str, frozenset[str]] = {
    "wget": frozenset({"-O", "-o", "-T", "-t", "-Y", "-U", "--header", "-P", "-e"}),
    "curl": frozenset(
        {
            "-o",
            "-m",
            "-H",
            "-X",
            "-d",
            "-u",
            "-w",
            "-A",
            "-e",
            "--max-time",
            "--connect-timeout",
            "--retry",
            "--output",
            "--header",
            "--request",
            "--data",
            "--user",
            "--write-out",
            "--resolve",
        }
    ),
    "nc": frozenset({"-w", "-i", "-p", "-s", "-q", "-W", "-e", "-c"}),
    "ping": frozenset({"-c", "-W", "-w", "-i", "-s", "-t", "-I"}),
    "nslookup": frozenset({"-timeout", "-port"}),
    "dig": frozenset({"-p", "-t", "-c", "-q"}),
    "host": frozenset({"-t", "-W", "-c", "-R", "-N"}),
    "timeout": frozenset({"-s", "-k", "--signal", "--kill-after"}),
}
_ALIASES = {"ncat": "nc", "netcat": "nc"}
_FILE_TESTS = frozenset({"-f", "-e", "-s", "-d", "-r"})

TargetKind = Literal["name", "url", "tcp", "file"]


@dataclass(frozen=True, slots=True)
class WaitTarget:
    kind: TargetKind
    tool: str  # the program the command runs: nslookup, wget, nc, test ...
    host: str | None = None
    port: int | None = None
    url: str | None = None
    path: str | None = None  # for "file"

    @property
    def what(self) -> str:
        if self.kind == "url":
            return f"URL {self.url}"
        if self.kind == "tcp":
            return f"TCP {self.host}:{self.port}"
        if self.kind == "file":
            return f"file {self.path}"
        return f"name {self.host}"


@dataclass(frozen=True, slots=True)
class WaitPlan:
    targets: tuple[WaitTarget, ...]
    loops: bool  # the command repeats until its probe succeeds
    script: str  # the text that was read, for evidence


def _script_of(argv: tuple[str, ...]) -> tuple[str, bool]:
    """The shell script to read, and whether it needs shell parsing."""
    if argv and posixpath.basename(argv[0]) in _SHELLS:
        for i, arg in enumerate(argv[1:], start=1):
            short_c = arg.startswith("-") and not arg.startswith("--") and "c" in arg
            if (arg == "-c" or short_c) and i + 1 < len(argv):
                return argv[i + 1], True
        return " ".join(argv[1:]), True
    return shlex.join(argv), False


def _substitute(script: str, namespace: str | None, namespace_vars: tuple[str, ...]) -> str:
    if namespace:
        script = _NS_FILE.sub(namespace, script)
        for var in namespace_vars:
            script = re.sub(rf"\$(?:\{{{re.escape(var)}\}}|{re.escape(var)}\b)", namespace, script)
    # Whatever else is substituted stays unknown; "$CMD" keeps the word whole.
    return _SUBSTITUTION.sub("$CMD", script)


def _simple_commands(script: str) -> list[list[str]]:
    script = _REDIRECTION.sub(" ", script)
    # Newlines end commands like ";" does; shlex alone would treat them as blanks.
    lexer = shlex.shlex(script.replace("\n", " ; "), posix=True, punctuation_chars=";&|()<>")
    lexer.whitespace_split = True
    words: list[str] = []
    out: list[list[str]] = []
    try:
        tokens = list(lexer)
    except ValueError:
        # Unbalanced quotes: fall back to blanks, which still finds plain probes.
        tokens = script.replace(";", " ; ").split()
    skip_next = False
    for tok in tokens:
        if skip_next:
            skip_next = False
            continue
        if tok in _SEPARATORS:
            if words:
                out.append(words)
            words = []
            continue
        if tok and set(tok) <= set("<>"):
            skip_next = True  # the redirect's target
            continue
        if _REDIRECTS.match(tok):
            continue
        words.append(tok)
    if words:
        out.append(words)
    return out


def _strip_prefix(words: list[str]) -> list[str]:
    """Drop shell keywords, variable assignments and ``timeout N`` in front of a command."""
    i = 0
    while i < len(words):
        w = words[i]
        if w in _KEYWORDS or re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", w):
            i += 1
            continue
        if posixpath.basename(w) == "timeout":
            i += 1
            while i < len(words) and words[i].startswith("-"):
                i += 2 if words[i] in _VALUED["timeout"] else 1
            i += 1  # the duration
            continue
        break
    return words[i:]


def _positionals(tool: str, args: list[str]) -> list[str]:
    valued = _VALUED.get(tool, frozenset())
    out: list[str] = []
    skip = False
    for a in args:
        if skip:
            skip = False
            continue
        if a.startswith("-") and len(a) > 1:
            if a in valued:
                skip = True
            continue
        out.append(a)
    return out


def _port(text: str) -> int | None:
    try:
        n = int(text)
    except ValueError:
        return None
    return n if 0 < n < 65536 else None


def _url_target(tool: str, arg: str) -> WaitTarget | None:
    url = arg if "://" in arg else f"http://{arg}"
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None
    if not host:
        return None
    return WaitTarget("url", tool, host=host, port=port, url=arg)


def _probe(words: list[str]) -> WaitTarget | None:
    if not words:
        return None
    tool = posixpath.basename(words[0])
    if tool == "busybox" and len(words) > 1:
        words = words[1:]
        tool = words[0]
    tool = _ALIASES.get(tool, tool)
    args = words[1:]
    pos = _positionals(tool, args)
    if tool in ("nslookup", "host", "ping"):
        if tool == "ping" and pos:
            return WaitTarget("name", tool, host=pos[-1])
        return WaitTarget("name", tool, host=pos[0]) if pos else None
    if tool == "dig":
        names = [a for a in pos if not a.startswith(("+", "@"))]
        return WaitTarget("name", tool, host=names[0]) if names else None
    if tool == "getent":
        if len(pos) >= 2 and pos[0] in ("hosts", "ahosts", "ahostsv4", "ahostsv6"):
            return WaitTarget("name", tool, host=pos[1])
        return None
    if tool in ("wget", "curl"):
        urls = [a for a in pos if "://" in a] or pos
        return _url_target(tool, urls[0]) if urls else None
    if tool in ("nc", "telnet"):
        if len(pos) >= 2 and (port := _port(pos[1])) is not None:
            return WaitTarget("tcp", tool, host=pos[0], port=port)
        if len(pos) == 1 and ":" in pos[0]:
            host, _, port_text = pos[0].rpartition(":")
            if (port := _port(port_text)) is not None:
                return WaitTarget("tcp", tool, host=host, port=port)
        return None
    if tool in ("[", "test", "[["):
        for i, a in enumerate(args[:-1]):
            if a in _FILE_TESTS and args[i + 1].startswith("/"):
                return WaitTarget("file", "test", path=args[i + 1])
    return None


# Pure, and asked again for the same command lines on every diagnosis.
@functools.lru_cache(maxsize=1024)
def wait_plan(
    command: tuple[str, ...],
    args: tuple[str, ...],
    *,
    namespace: str | None = None,
    namespace_vars: tuple[str, ...] = (),
) -> WaitPlan:
    """The probes in a container's command line and whether it loops on them.

    ``namespace`` replaces the pod's own namespace where the script reads it
    (the service account's namespace file, or ``namespace_vars``: env
    variables set from ``metadata.namespace``).
    """
    argv = (*command, *args)
    if not argv:
        return WaitPlan((), False, "")
    script, shell = _script_of(argv)
    commands = (
        _simple_commands(_substitute(script, namespace, namespace_vars)) if shell else [list(argv)]
    )
    loops = shell and any(w and w[0] in ("until", "while") for w in commands)
    # "for i in $(seq 1 30)" style retries count as loops too.
    loops = loops or (shell and any(w and w[0] == "for" for w in commands))
    found: list[WaitTarget] = []
    for words in commands:
        target = _probe(_strip_prefix(words))
        if target is not None and target not in found:
            found.append(target)
    return WaitPlan(tuple(found), loops, script)


def service_for(host: str, namespace: str) -> tuple[str, str] | None:
    """The (Service, namespace) a name resolves to inside the cluster; None for other names.

    ``db`` and ``db.<ns>`` and ``db.<ns>.svc[.<domain>]`` name Service db;
    ``web-0.web.<ns>.svc...`` a pod behind the headless Service web. A
    two-label name whose second label is not the pod's namespace may just as
    well be an outside name, so it maps only when written with ``.svc``.
    """
    name = host.rstrip(".").lower()
    if not name or "$" in name:
        return None
    try:
        ipaddress.ip_address(name)
        return None
    except ValueError:
        pass
    labels = name.split(".")
    if "svc" in labels:
        before = labels[: labels.index("svc")]
        if len(before) == 2:
            return before[0], before[1]
        if len(before) == 3:
            return before[1], before[2]
        return None
    if len(labels) == 1:
        return labels[0], namespace
    if len(labels) == 2 and labels[1] == namespace:
        return labels[0], namespace
    return None
