"""``kubectl podlens``: the whole cluster's pods, diagnoses and kill-and-watch in one answer.

The plugin runs on the caller's machine, not on a node. It finds every
node's agent through the API server, reaches each through a port-forward
(an opaque tunnel, so the caller's own token reaches the agent and the
agent's TokenReview and SubjectAccessReview keep working), asks them
concurrently under a per-node deadline, and merges their answers. Nodes that
did not answer are listed with the reason, and the exit status says the
answer is partial.

Modules, top down: ``cli`` (commands, flags, exit statuses), ``render``
(tables, JSON, YAML), ``agents`` (one node's agent over HTTP), ``fanout``
(many nodes at once, bounded), ``tunnel`` (a local port per agent over
port-forwards), ``cluster`` (the only module that imports the Kubernetes
client), ``model`` and ``errors``. From the agent it imports the wire models
of ``agent.api.schemas`` only: the HTTP contract, never the agent's insides.
"""
