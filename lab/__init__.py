"""The lab node: a private containerd, a stand-in API server and kubelet, and the agent.

Everything here is test and demo infrastructure around the agent, run as
``python -m lab``. ``node`` owns the command line and the lab's processes;
``containerd``, ``images`` and ``cri_pods`` the runtime side; ``apiserver``
and ``kubelet`` the stand-ins; ``exercises`` and ``walkthrough`` what a
learner runs; ``processes`` and ``apitime`` the pieces several of them
share; ``errors`` the lab's own errors.

The lab may import the agent's domain modules (kubelet's and kubectl's rules
stated once, in ``agent.domain``); the agent never imports the lab.
"""
