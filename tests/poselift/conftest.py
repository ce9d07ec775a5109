import pytest


@pytest.fixture(scope="session", autouse=True)
def fresh_onnx_cache(tmp_path_factory):
    """Exports go to a cache of this session's own, so the core's tests always run a fresh ONNX export."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("POSELIFT_CACHE_DIR", str(tmp_path_factory.mktemp("poselift-cache")))
        yield
