"""poselift_client is light: importing it (stubs, StreamLift client, REST helper) loads neither torch nor
redis nor any server or core package, only grpcio and protobuf."""

import json
import subprocess
import sys
from pathlib import Path

SERVER_SIDE = {"torch", "redis", "numpy", "fastapi", "pydantic", "poselift", "service", "trainer"}


def test_client_imports_without_torch_or_redis(tmp_path: Path) -> None:
    code = (
        "import json, sys\n"
        "import poselift_client, poselift_client.stream, poselift_client.rest\n"
        "from poselift_client import pb, pb_grpc\n"
        "assert pb.Camera(width=1).width == 1 and pb_grpc.PoseLifterStub\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    # From an empty folder: the repository root is not on the path, only the installed packages are.
    result = subprocess.run(
        [sys.executable, "-I", "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    modules = {name.split(".")[0] for name in json.loads(result.stdout)}
    assert "grpc" in modules and "google" in modules  # the check sees real imports
    assert not modules & SERVER_SIDE, sorted(modules & SERVER_SIDE)


def test_client_stubs_are_the_servers() -> None:
    from poselift_client import pb

    from service.rpc import codec

    assert codec.pb is pb  # one set of generated classes, imported by the server from the client
