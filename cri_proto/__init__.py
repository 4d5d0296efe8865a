"""Python bindings for the subset of the CRI ``runtime.v1`` API that podlens uses.

``api.proto`` is the source; ``api_pb2``/``api_pb2_grpc`` (and their ``.pyi``
stubs) are generated from it by ``scripts/gen_proto.py`` and committed.
"""

from cri_proto import api_pb2, api_pb2_grpc

__all__ = ["api_pb2", "api_pb2_grpc"]
