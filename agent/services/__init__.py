"""The Agent built once from Settings, and what it decides: node state, pods, evidence, healing.

The services layer: it may import the rules, the adapters, the domain, the errors and the
settings, never the HTTP layer or the command line.
"""
