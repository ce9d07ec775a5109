"""Light client of the poselift service: needs grpcio and protobuf only (no torch, numpy or redis).

- `poselift_client.pb` / `poselift_client.pb_grpc`: the messages and stub of `poselift.v1.PoseLifter`,
  generated from `protos/` by `make proto` (in `poselift_client.gen`).
- `poselift_client.stream`: `StreamLiftClient`, a StreamLift client that resumes a broken stream, and
  `RESUMABLE`, the status codes it resumes on.
- `poselift_client.rest`: `RestClient`, a small helper over the REST API (standard library only).
"""

from poselift_client.gen.poselift.v1 import lifter_pb2 as pb
from poselift_client.gen.poselift.v1 import lifter_pb2_grpc as pb_grpc

__all__ = ["pb", "pb_grpc"]
