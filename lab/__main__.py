"""``python -m lab up|apply|delete|status|down|walkthrough``: runs ``lab.node``'s command line."""

import signal
import sys

from lab.node import main

signal.signal(signal.SIGPIPE, signal.SIG_DFL)
sys.exit(main())
