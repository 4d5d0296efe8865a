"""The audit trail: every kill and every refusal, who asked, when, what, and the outcome.

Records go to the ``podlens.audit`` logger (one JSON object per line) and, when
a path is set, are appended to a file and fsynced before the action they
announce goes ahead, so a crash cannot lose the record of a kill.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger("podlens.audit")


class AuditLog:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, event: str, **fields: Any) -> dict[str, Any]:
        record = {"at": datetime.now(UTC).isoformat(), "event": event, **fields}
        line = json.dumps(record, default=str, sort_keys=True)
        log.info(line)
        if self.path is not None:
            with self._lock:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                try:
                    os.write(fd, (line + "\n").encode())
                    os.fsync(fd)
                finally:
                    os.close(fd)
        return record

    def read(self) -> list[dict[str, Any]]:
        if self.path is None or not self.path.exists():
            return []
        with self.path.open() as handle:
            return [json.loads(line) for line in handle if line.strip()]
