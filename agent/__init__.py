"""podlens, the node-level pod troubleshooting agent; its layers are the subpackages.

The package itself holds no code and imports nothing.
"""
