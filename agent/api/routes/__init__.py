"""One module per resource; ``ROUTERS`` is the order they are mounted in.

Part of the HTTP edge: imports the route modules only.
"""

from agent.api.routes import (
    containers,
    diagnosis,
    heal,
    health,
    logs,
    metrics,
    node,
    pods,
    processes,
    sandboxes,
    ui,
    whoami,
)

ROUTERS = (
    health.router,
    metrics.router,
    node.router,
    pods.router,
    logs.router,
    diagnosis.router,
    sandboxes.router,
    containers.router,
    processes.router,
    heal.router,
    whoami.router,
    ui.router,
)

__all__ = ["ROUTERS"]
