"""The agent's command line: ``serve`` (the HTTP API) and ``diagnose`` (the rules, offline).

The wiring layer: it may import every other layer of the agent.
"""

from agent.cli.serve import build_parser, main, settings_from_args

__all__ = ["build_parser", "main", "settings_from_args"]
