"""``python -m lab.apiserver``: runs the stand-in API server as a process (``server.main``).

SIGPIPE keeps Python's default (ignored): a server writes to sockets whose
clients may have hung up, and that must fail one write, not end the process.
"""

import sys

from lab.apiserver.server import main

sys.exit(main())
