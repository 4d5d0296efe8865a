"""What can stop a command, each with the exit status it ends with.

A partial answer is not an error (the command prints what it has and ends
with ``EXIT_PARTIAL``); these end a command before or instead of an answer.
Imports the standard library only.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1
# argparse's own status for a bad command line.
EXIT_USAGE = 2
# Some nodes did not answer: what was printed is true but not complete.
EXIT_PARTIAL = 3


class PluginError(Exception):
    """A command cannot go on; ``message`` says why and what to do."""

    exit_status = EXIT_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MissingPermission(PluginError):
    """The caller lacks a permission the command needs; the message names it."""

    def __init__(self, verb: str, resource: str, namespace: str | None, why: str) -> None:
        where = f" in namespace {namespace}" if namespace else ""
        super().__init__(
            f"you may not {verb} {resource}{where} ({why}); ask for a Role that allows it, "
            f"check with `kubectl auth can-i {verb} {resource}"
            + (f" -n {namespace}`" if namespace else "`")
        )
        self.verb = verb
        self.resource = resource
        self.namespace = namespace


class NotFound(PluginError):
    """What the command names does not exist (a pod, a node, an agent)."""


class ApiUnavailable(PluginError):
    """The API server did not answer in time or at all."""
