"""How bad a finding or a mismatch is, and the order they are listed in.

critical: the pod will not recover by itself; error: it does not work now;
warning: it works badly or will soon fail; info: worth knowing.
Imports the standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

Severity = Literal["critical", "error", "warning", "info"]

SEVERITY_RANK: Mapping[str, int] = {"critical": 0, "error": 1, "warning": 2, "info": 3}
