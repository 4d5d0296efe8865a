"""Errors of the lab node.

These are kept apart from :mod:`agent.errors`: the lab is test and demo
infrastructure, and its failures (a missing compiler, a runtime that will
not boot) must never be mapped to an HTTP status by the agent.

Owns the lab's error tree. Imports nothing.
"""

from __future__ import annotations


class LabError(Exception):
    """The lab node could not be set up or driven."""


class MissingTool(LabError):
    """A program the lab needs is not installed; names the Debian package."""

    def __init__(self, tool: str, apt_package: str, why: str = "") -> None:
        detail = f" ({why})" if why else ""
        super().__init__(
            f"{tool} is needed by the lab node{detail} but was not found; "
            f"install it with: apt-get install -y {apt_package}"
        )
        self.tool = tool
        self.apt_package = apt_package


class NotRoot(LabError):
    """The lab node runs a container runtime, which needs root."""


class ContainerdFailed(LabError):
    """The private containerd did not start, or stopped answering."""


class CriCallFailed(LabError):
    """A CRI call made by the lab's pod driver failed.

    ``handle`` is the pod concerned when the pod exists despite the failure
    (a container that would not start), so the caller can still remove it.
    """

    def __init__(self, message: str, *, handle: object | None = None) -> None:
        super().__init__(message)
        self.handle = handle
