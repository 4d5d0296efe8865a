"""The lab's stand-in API server: real HTTP, the objects and behaviour the agent and kubectl use.

Owns ``server`` (the HTTP handler and the ``FakeApiServer`` facade), ``store``
(objects, resourceVersions, watch history), ``select`` (field and label
selectors), ``patch`` (JSON, merge and strategic merge patches) and ``status``
(Status error bodies). Imports the standard library, plus ``lab.apitime`` for
timestamps; never the agent or the kubelet, which is only ever its client.
"""

from lab.apiserver.server import FakeApiServer, RequestRecord
from lab.apiserver.status import ApiStatusError

__all__ = ["ApiStatusError", "FakeApiServer", "RequestRecord"]
