"""``python -m agent``: the command line, ending quietly when its reader goes away.

The wiring layer: imports the command line (``agent.cli``) and the standard library only.
"""

import os
import sys

from agent.cli import main

try:
    sys.exit(main())
except BrokenPipeError:
    # The reader went away (e.g. `| head`): stop quietly, as command-line tools do.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(0)
