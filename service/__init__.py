"""The poselift service: REST (and, later, gRPC) over one transport-agnostic lifting core."""
