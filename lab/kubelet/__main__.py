"""``python -m lab.kubelet``: runs the stand-in kubelet as a process (``kubelet.main``)."""

import sys

from lab.kubelet.kubelet import main

sys.exit(main())
