"""The streaming gRPC API (`poselift.v1.PoseLifter`): a grpc.aio server over the same lifting core as REST.

The messages and stubs are generated from `protos/` into the light client package (`poselift_client.gen`,
`make proto`); the server lives in `service.rpc.server`. Importing this package imports nothing else, so the
stubs never drag the server in.
"""
