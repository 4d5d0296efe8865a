"""``python -m kubectl_podlens``: the same as the ``kubectl-podlens`` command."""

from kubectl_podlens.cli import main

raise SystemExit(main())
