"""``python -m lab.kubelet``: run the stand-in kubelet as a process."""

import sys

from lab.kubelet.kubelet import main

sys.exit(main())
