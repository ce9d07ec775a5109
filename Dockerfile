# syntax=docker/dockerfile:1
# One image for serving (the default command) and training (compose's `train` profile).
#
#   docker build -t poselift .                                      # CPU PyTorch (default)
#   docker build -t poselift:cuda \
#       --build-arg BASE_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04 \
#       --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 .    # GPU (CUDA 12.6)
#
# BASE_IMAGE: any Debian/Ubuntu image; one without Python gets its distribution's python3 (>= 3.11).
# TORCH_INDEX_URL: where the torch wheel comes from (the CUDA wheels carry their CUDA libraries; the host
# needs only the NVIDIA driver and the container toolkit: `docker run --gpus all ...`).
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    POSELIFT_CACHE_DIR=/opt/poselift-cache

RUN if ! python3 -m venv --help >/dev/null 2>&1; then \
        apt-get update \
        && apt-get install -y --no-install-recommends python3 python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -m venv "$VIRTUAL_ENV" \
    && groupadd --system --gid 10001 poselift \
    && useradd --system --uid 10001 --gid poselift --home-dir /app --shell /usr/sbin/nologin poselift

WORKDIR /app

# Dependencies in their own layer, before the source: only a change to pyproject.toml rebuilds it.
COPY pyproject.toml ./
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}" \
    && python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
extra = p['optional-dependencies']; print('\n'.join(p['dependencies'] + extra['serve'] + extra['train']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

# The source (with the shipped checkpoints in poselift/weights); the generated gRPC stubs are in the client.
COPY client ./client
COPY README.md ./
COPY poselift ./poselift
COPY service ./service
COPY trainer ./trainer
COPY examples ./examples
# Loading each shipped checkpoint (poselift.checkpoint.SHIPPED) once here checks it and exports its ONNX graph
# into POSELIFT_CACHE_DIR (read-only for the service user), so a replica starts without the ~3 s export.
RUN pip install --no-deps ./client . \
    && python -c "import service.rpc.server, trainer; from poselift import load_lifter; \
from poselift.checkpoint import SHIPPED; [load_lifter(name, 'cpu') for name in SHIPPED]" \
    && mkdir -p /app/runs && chown poselift:poselift /app/runs

USER poselift
ENV POSELIFT_HOST=0.0.0.0 \
    POSELIFT_HTTP_PORT=8000 \
    POSELIFT_GRPC_PORT=50051
EXPOSE 8000 50051
# Ready on both transports: REST /readyz and the gRPC health service (model loaded, store reachable).
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-m", "service.healthcheck"]
# SIGTERM drains: health NOT_SERVING, open streams answer their frame in hand, then stop within 10 s.
STOPSIGNAL SIGTERM
CMD ["poselift", "serve"]
