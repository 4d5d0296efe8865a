"""The audit trail: every kill and every refusal, who asked, when, what, and the outcome.

Records go to the ``podlens.audit`` logger (one JSON object per line) and, when
a path is set, are appended to a file and fsynced before the action they
announce goes ahead, so a crash cannot lose the record of a kill. A record
that cannot be written stops that action (``Unavailable``, rule
``audit-unwritable``): nothing is killed unaudited.

Who asked comes from the HTTP edge through ``audit_caller``: the caller's
name, uid, groups, client address and token fingerprint land in every record
written while a request runs, and in the records of the run it starts (an
asyncio task copies the context it was started in). The edge sets it for
every request, so no route can forget to.

Part of the heal service: imports the errors and the standard library only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from agent.errors import Unavailable

log = logging.getLogger("podlens.audit")

_CALLER: ContextVar[Mapping[str, object]] = ContextVar(
    "podlens_audit_caller", default=MappingProxyType({})
)


@contextlib.contextmanager
def audit_caller(fields: Mapping[str, object]) -> Iterator[None]:
    """Name the caller in every audit record written inside the block (and by tasks it starts)."""
    token = _CALLER.set(MappingProxyType(dict(fields)))
    try:
        yield
    finally:
        _CALLER.reset(token)


class AuditLog:
    """Appends audit records to the log and, when a path is set, to a file, fsynced."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                # Reads need no audit trail; every kill is refused until it can be written.
                log.error("audit log directory %s cannot be created: %s", path.parent, exc)

    def write(self, event: str, **fields: Any) -> dict[str, Any]:
        """Record one event; raises ``Unavailable`` when the file cannot be written."""
        record = {"at": datetime.now(UTC).isoformat(), "event": event, **fields}
        caller = _CALLER.get()
        if caller:
            record["caller"] = dict(caller)
        line = json.dumps(record, default=str, sort_keys=True)
        log.info(line)
        if self.path is not None:
            try:
                self._append(self.path, line)
            except OSError as exc:
                log.error("audit record not written to %s: %s", self.path, exc)
                raise Unavailable(
                    f"the audit log {self.path} cannot be written ({exc.strerror or exc}); "
                    "nothing is done without its record",
                    rule="audit-unwritable",
                ) from None
        return record

    def _append(self, path: Path, line: str) -> None:
        with self._lock:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, (line + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)

    def read(self) -> list[dict[str, Any]]:
        """Every record in the file, oldest first; empty without a file."""
        if self.path is None or not self.path.exists():
            return []
        with self.path.open() as handle:
            return [json.loads(line) for line in handle if line.strip()]
