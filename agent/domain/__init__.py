"""The agent's own types, and kubectl's and kubelet's rules over them, with no I/O.

Domain: imports the standard library and other domain modules only.
"""
