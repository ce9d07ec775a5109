"""The poselift service: REST and gRPC over one transport-agnostic lifting core."""
