"""The streaming gRPC API (`poselift.v1.PoseLifter`): a grpc.aio server over the same lifting core as REST.

`gen/` holds the stubs generated from `protos/` by `make proto` (committed, checked current by a test).
"""

from service.rpc.server import RpcServer

__all__ = ["RpcServer"]
