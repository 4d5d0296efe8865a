"""``python -m lab.apiserver``: run the stand-in API server as a process."""

import signal
import sys

from lab.apiserver.server import main

signal.signal(signal.SIGPIPE, signal.SIG_DFL)
sys.exit(main())
