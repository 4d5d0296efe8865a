"""``python -m lab.apiserver``: runs the stand-in API server as a process (``server.main``)."""

import signal
import sys

from lab.apiserver.server import main

signal.signal(signal.SIGPIPE, signal.SIG_DFL)
sys.exit(main())
