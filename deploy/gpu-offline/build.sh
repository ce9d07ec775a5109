#!/bin/bash
# Rebuilds the carry kit on the dev machine (Debian 12, x86-64, PyPI reachable) into the git-ignored
# .offline-kit/ at the repository root (`make gpu-kit`; README.md beside this file says what it is for):
# - wheels/: CPython 3.12 manylinux wheels of what the GPU machine lacks, at the versions of the repo's .venv,
#   recompressed with LZMA by repack_lzma.py to fit the 64 MiB a device call carries;
# - redis/redis-*.tar.xz: Debian's redis-server with liblzf, libjemalloc and libatomic (bin/redis-server
#   here is the wrapper that runs it);
# - bandai/: data/bandai/bandai_h36m17.npz packed by pack_bandai.py (positions at 0.5 mm), when that file is
#   here, for a training run (unpack_bandai.py rebuilds the npz there).
# See env.sh for how the GPU machine uses them, stamp.sh for .offline-kit/COMMIT.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
src=deploy/gpu-offline
kit=.offline-kit
ver() { .venv/bin/python -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1"; }
# server (pyproject [serve] minus what the machine has), client stubs, and two test modules' imports
names="fastapi starlette pydantic pydantic-core pydantic-settings python-dotenv annotated-types
typing-inspection annotated-doc opentelemetry-api typing-extensions uvicorn redis hiredis orjson grpcio
grpcio-health-checking grpcio-reflection protobuf jsonschema referencing jsonschema-specifications rpds-py pybvh"
mkdir -p $kit
rm -rf $kit/wheels && mkdir $kit/wheels
for name in $names; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d $kit/wheels "$name==$(ver "$name")" 2>&1 |
        grep -v "is ignored" || true
done
python3 $src/repack_lzma.py $kit/wheels/*.whl
stage=$(mktemp -d)
mkdir -p "$stage/bin" "$stage/lib"
cp -L "$(command -v redis-server)" "$stage/bin/redis-server"  # Debian: a link to redis-check-rdb
for lib in libatomic.so.1 liblzf.so.1 libjemalloc.so.2; do cp -L "/lib/x86_64-linux-gnu/$lib" "$stage/lib/"; done
version=$(redis-server --version | sed -n 's/.*v=\([0-9.]*\).*/\1/p')
rm -rf $kit/redis && mkdir $kit/redis
tar -C "$stage" --owner=0 --group=0 -cJf "$kit/redis/redis-$version-debian12-x86_64.tar.xz" bin lib
rm -rf "$stage"
if [ -f data/bandai/bandai_h36m17.npz ]; then
    .venv/bin/python $src/pack_bandai.py
else
    echo "no data/bandai/bandai_h36m17.npz: $kit/bandai not rebuilt"
fi
du -sb $kit/wheels $kit/redis $kit/bandai 2>/dev/null || true
