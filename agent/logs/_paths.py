"""Where container logs live, and opening them without leaving the log roots.

Kubelet's layout is ``<root>/<namespace>_<pod>_<uid>/<container>/<restartCount>.log``
(root ``/var/log/pods``); rotated copies sit next to the live file as
``<restartCount>.log.<YYYYMMDD-HHMMSS>`` and, once compressed,
``...<YYYYMMDD-HHMMSS>.gz``. Names are checked against the Kubernetes name
rules before they become path components; ``_`` is not allowed in any of
them, which is what keeps ``<ns>_<pod>_<uid>`` unambiguous.

Part of the log adapter: imports the errors and the standard library only.
"""

from __future__ import annotations

import errno
import functools
import io
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.errors import Forbidden, InvalidInput, NotFound

_DNS1123_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(
    r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*"
)
# API-server UIDs are UUIDs; static pods get 32 hex digits from kubelet.
_UID = re.compile(r"[0-9A-Za-z](?:[-0-9A-Za-z]*[0-9A-Za-z])?")

# kubelet: pkg/kubelet/logs/container_log_manager.go, timestampFormat
# "20060102-150405", compressSuffix ".gz"; ".tmp" files are half-written
# compressions and never part of the log.
_ROTATED_SUFFIX = re.compile(r"\.(\d{8}-\d{6})(\.gz)?")

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY


def _check_name(what: str, value: object, pattern: re.Pattern[str], max_len: int) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string, not {type(value).__name__}", field=what)
    if not value:
        raise InvalidInput(f"{what} must not be empty", field=what)
    if len(value) > max_len or pattern.fullmatch(value) is None:
        raise InvalidInput(
            f"{what} {value!r} is not a valid Kubernetes name "
            f"(lower-case letters, digits and '-', at most {max_len} characters)",
            field=what,
        )
    return value


def check_namespace(value: object) -> str:
    return _check_name("namespace", value, _DNS1123_LABEL, 63)


def check_pod_name(value: object) -> str:
    return _check_name("pod", value, _DNS1123_SUBDOMAIN, 253)


def check_container_name(value: object) -> str:
    return _check_name("container", value, _DNS1123_LABEL, 63)


def check_uid(value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > 128 or not _UID.fullmatch(value):
        raise InvalidInput(f"pod uid {value!r} is not a valid UID", field="uid")
    return value


def check_restart_count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(
            f"restart count must be a non-negative integer, not {value!r}", field="restart_count"
        )
    return value


def _fspath(path: object, what: str) -> str:
    if not isinstance(path, str | os.PathLike):
        raise InvalidInput(f"{what} must be a path, not {type(path).__name__}")
    text = os.fspath(path)
    if not isinstance(text, str):
        raise InvalidInput(f"{what} must be a text path")
    if not text or "\0" in text:
        raise InvalidInput(f"{what} {text!r} is empty or contains a NUL byte")
    return text


def real_path(text: str) -> str:
    """``os.path.realpath``, in three system calls where the path exists.

    An ``O_PATH`` descriptor resolves every symlink without opening the file
    for I/O (a device or FIFO is not touched), and ``/proc/self/fd`` names
    where it landed. ``os.path.realpath`` instead lstats every component
    from Python, which dominated reading a short log. A missing path falls
    back to it, since the answer must not need the file to exist.
    """
    try:
        fd = os.open(text, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return os.path.realpath(text)
    try:
        landed = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        landed = ""
    finally:
        os.close(fd)
    # Anything but a plain absolute path (no /proc, a file deleted meanwhile:
    # "... (deleted)") is left to the slow, exact way.
    if not landed.startswith("/") or landed.endswith(" (deleted)"):
        return os.path.realpath(text)
    return landed


@functools.lru_cache(maxsize=256)
def _real_root(text: str) -> str:
    # Log directories are set up once (a node's /var/log/pods, a pod's own
    # directory); resolving them again for every file read is wasted work. A
    # root re-pointed elsewhere while the agent runs keeps its first target.
    return real_path(text)


def _real_roots(allowed_roots: Sequence[Path | str]) -> list[str]:
    if isinstance(allowed_roots, str | os.PathLike) or not allowed_roots:
        raise InvalidInput("at least one allowed log directory is needed (a sequence of paths)")
    roots = []
    for root in allowed_roots:
        text = _fspath(root, "allowed log directory")
        if not os.path.isabs(text):
            raise InvalidInput(f"allowed log directory {text!r} must be absolute")
        roots.append(_real_root(text))
    return roots


def _within(real: str, roots: Sequence[str]) -> bool:
    return any(real == root or real.startswith(root.rstrip("/") + "/") for root in roots)


def resolve_within(path: Path | str, allowed_roots: Sequence[Path | str]) -> Path:
    """``path`` with every symlink resolved, refused unless it lies under a root.

    The roots are resolved too, so a node where ``/var/log`` is itself a
    symlink still works. The path need not exist yet.
    """
    text = _fspath(path, "log path")
    if not os.path.isabs(text):
        raise InvalidInput(f"log path {text!r} must be absolute")
    roots = _real_roots(allowed_roots)
    real = real_path(text)
    if not _within(real, roots):
        raise InvalidInput(
            f"log path {text} resolves to {real}, outside the allowed log directories "
            f"({', '.join(roots)})",
            path=text,
        )
    return Path(real)


def container_log_dir(
    log_root: Path,
    namespace: str,
    pod: str,
    uid: str,
    *,
    allowed_roots: Sequence[Path] | None = None,
) -> Path:
    """``<log_root>/<namespace>_<pod>_<uid>``, resolved and checked.

    ``allowed_roots`` defaults to ``log_root`` alone.
    """
    name = f"{check_namespace(namespace)}_{check_pod_name(pod)}_{check_uid(uid)}"
    root = _fspath(log_root, "log root")
    return resolve_within(Path(root) / name, allowed_roots or (Path(root),))


def log_path_for(
    pod_log_dir: Path,
    container_name: str,
    restart_count: int,
    *,
    allowed_roots: Sequence[Path] | None = None,
) -> Path:
    """``<pod_log_dir>/<container>/<restartCount>.log``, resolved and checked.

    ``allowed_roots`` defaults to ``pod_log_dir`` alone.
    """
    name = check_container_name(container_name)
    count = check_restart_count(restart_count)
    base = _fspath(pod_log_dir, "pod log directory")
    return resolve_within(Path(base) / name / f"{count}.log", allowed_roots or (Path(base),))


def previous_log_path(
    current: Path,
    restart_count: int,
    *,
    allowed_roots: Sequence[Path | str],
) -> Path | None:
    """The log of the attempt before ``restart_count``: ``<restartCount-1>.log``
    next to ``current``, when that file still exists.

    None for a first attempt, or when kubelet has already removed the dead
    container together with its log (its GC keeps one dead instance per
    container by default). When the runtime still lists the dead container,
    its own ``log_path`` is the better answer and can be tailed directly.
    The candidate must resolve under ``allowed_roots``, or nothing is looked
    at (not even whether it exists).
    """
    count = check_restart_count(restart_count)
    if count == 0:
        return None
    text = _fspath(current, "current log path")
    directory = Path(text).parent
    candidate = resolve_within(directory / f"{count - 1}.log", allowed_roots)
    try:
        st = os.stat(candidate)
    except OSError:
        return None
    return candidate if stat.S_ISREG(st.st_mode) else None


def safe_open_log(
    path: Path | str, allowed_roots: Sequence[Path | str], *, resolved: bool = False
) -> io.FileIO:
    """Open a log file for reading, only if it really lies under an allowed root.

    The path is resolved and checked, the resolved path is opened with
    ``O_NOFOLLOW`` (a final component swapped for a symlink in between fails),
    and the file actually opened is checked again through ``/proc/self/fd``
    (a directory swapped for a symlink in between is caught there). Only
    regular files are accepted: a FIFO or device would block or never end.
    ``resolved`` says the caller has just resolved ``path``: a normalized
    absolute path under a root is then taken as it is, and the check after
    opening still applies.
    """
    text = _fspath(path, "log path")
    roots = _real_roots(allowed_roots)
    if resolved and os.path.isabs(text) and os.path.normpath(text) == text and _within(text, roots):
        real = text
    else:
        real = str(resolve_within(text, roots))
    try:
        fd = os.open(real, _OPEN_FLAGS)
    except FileNotFoundError:
        raise NotFound(f"log file {text} does not exist", path=text) from None
    except PermissionError:
        raise Forbidden(f"log file {text} is not readable by the agent", path=text) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InvalidInput(
                f"log file {text} became a symlink while opening it", path=text
            ) from None
        raise NotFound(f"log file {text} cannot be opened: {exc.strerror}", path=text) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InvalidInput(f"log file {text} is not a regular file", path=text)
        try:
            opened = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            opened = real
        opened = opened.removesuffix(" (deleted)")
        if not _within(opened, roots):
            raise InvalidInput(
                f"log file {text} was opened as {opened}, outside the allowed log directories",
                path=text,
            )
        return io.FileIO(fd, "rb", closefd=True)
    except BaseException:
        os.close(fd)
        raise


@dataclass(frozen=True, slots=True)
class RotatedFile:
    path: Path
    stamp: str
    compressed: bool


def rotated_files(current: Path) -> list[RotatedFile]:
    """The rotated copies of ``current``, newest first.

    A plain copy that also exists as ``.gz`` is one kubelet is compressing
    right now: the ``.gz`` holds the same lines, so only it is kept.
    """
    base = current.name
    try:
        names = [entry.name for entry in os.scandir(current.parent)]
    except OSError:
        return []
    present = set(names)
    found = []
    for name in names:
        if not name.startswith(base):
            continue
        match = _ROTATED_SUFFIX.fullmatch(name, len(base))
        if match is None:
            continue
        compressed = match.group(2) is not None
        if not compressed and f"{name}.gz" in present:
            continue
        found.append(RotatedFile(current.parent / name, match.group(1), compressed))
    found.sort(key=lambda r: r.stamp, reverse=True)
    return found
