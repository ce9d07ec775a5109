# poselift — every command a newcomer needs. `make setup` is idempotent and is run by the others.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# CPU build by default: this exact pin is served from local disk/PyPI's CPU wheel and avoids the CUDA stack.
# A GPU user runs: make setup TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup system-tools viewer-vendor video-setup serve test check lint docs proto train train-tcn train-seq2seq train-framewise eval bench soak container-tools image-test gpu-check gpu-kit clean

setup: $(STAMP) system-tools viewer-vendor video-setup

$(STAMP): pyproject.toml client/pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_SPEC)
	$(BIN)/pip install --quiet -e ./client  # poselift_client: the gRPC stubs the server imports, and the light client
	$(BIN)/pip install --quiet -e '.[train,serve,render,dev]'
	touch $(STAMP)

# The tests run a real redis-server and nginx (the balancer of docker-compose.yml) on loopback, and the
# viewer's test drives Debian's chromium (tests/service/test_viewer.py). Installed here
# when missing and possible (root with apt-get); otherwise those tests skip and say why.
system-tools:
	@for pkg in redis-server:redis-server nginx:nginx-light chromium:chromium; do \
	    tool=$${pkg%%:*}; deb=$${pkg##*:}; \
	    command -v $$tool >/dev/null 2>&1 || test -x /usr/sbin/$$tool && continue; \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	        echo "installing $$deb"; \
	        (DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$deb >/dev/null 2>&1 || \
	         (apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$deb >/dev/null 2>&1)) || \
	            echo "note: could not install $$deb; the tests that need $$tool will skip"; \
	    else \
	        echo "note: $$tool is not installed; the tests that need it will skip (apt-get install $$deb)"; \
	    fi; \
	done

# `poselift video`'s 2D detector (detector/: MediaPipe 0.10.21 BlazePose, OpenCV, norfair) in its own
# environment: MediaPipe pins numpy < 2 and protobuf < 5, which the server's (protobuf 7) cannot hold; and the
# real test video, Debian's opencv-doc (examples/data/vtest.avi). A failure is a note: the video tests skip.
VIDEO_VENV := .venv-video
VIDEO_STAMP := $(VIDEO_VENV)/.installed
VTEST := /usr/share/doc/opencv-doc/examples/data/vtest.avi
video-setup:
	@$(MAKE) --no-print-directory $(VIDEO_STAMP) || \
	    echo "note: could not build $(VIDEO_VENV); poselift video and its tests need it (make video-setup)"
	@test -f $(VTEST) && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing opencv-doc (the test video)"; \
	    (DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends opencv-doc >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	      --no-install-recommends opencv-doc >/dev/null 2>&1)) || \
	        echo "note: could not install opencv-doc; the video tests will skip"; \
	else \
	    echo "note: $(VTEST) is missing; the video tests will skip (apt-get install opencv-doc)"; \
	fi

$(VIDEO_STAMP): detector/pyproject.toml
	test -x $(VIDEO_VENV)/bin/python || $(PY) -m venv $(VIDEO_VENV) || python3 -m venv $(VIDEO_VENV)
	$(VIDEO_VENV)/bin/pip install --quiet --upgrade pip
	$(VIDEO_VENV)/bin/pip install --quiet -e ./detector
	touch $(VIDEO_STAMP)

# The viewer's JavaScript (three.js) from npm, pinned by web/viewer/package-lock.json, copied into
# service/api/static/viewer/vendor (committed, so serving needs no npm; the viewer test checks the copies
# against the lock). npm ci runs when the lock is newer than the install; the page fetches nothing else.
viewer-vendor: $(STAMP)
	@if ! command -v npm >/dev/null 2>&1; then \
	    echo "note: npm is not installed; the viewer serves its committed copies of web/viewer's packages"; \
	elif test web/viewer/node_modules/.package-lock.json -nt web/viewer/package-lock.json || \
	        npm ci --prefix web/viewer --no-audit --no-fund --loglevel=error; then \
	    $(BIN)/python web/viewer/vendor.py; \
	else \
	    echo "note: npm ci failed; the viewer serves its committed copies of web/viewer's packages"; \
	fi

serve: setup
	$(BIN)/poselift serve

# The gRPC stubs in client/poselift_client/gen, from every proto under protos/ (committed;
# tests/service/rpc/test_stubs.py checks them).
proto: setup
	$(BIN)/python protos/generate.py

test: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The fast lane (docs/testing.md): lint, format, types, and the tests that start no server (no redis-server,
# poselift serve, nginx, browser, video or container) and are not marked slow. Needs only the venv.
CHECK_TESTS ?= tests/poselift tests/trainer tests/client tests/bench tests/service/test_settings.py \
    tests/service/test_config_doc.py
check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -q -m "not slow and not soak and not container" $(CHECK_TESTS)

# docs/configuration.md from service.config.Settings (tests/service/test_config_doc.py checks it is current).
docs: $(STAMP)
	$(BIN)/python -m service.config_doc

# The shipped checkpoints: trained on the train split only, on CPU, each within a wall-clock budget. The tcn
# (the default model) also draws 30 % of its windows from the Bandai data (CC BY-NC: data/bandai/README.md);
# TCN_EXTRA= trains it on CMU alone. `make train` runs them one after the other; -j3 side by side.
TCN_MINUTES ?= 60
SEQ2SEQ_MINUTES ?= 90
FRAMEWISE_MINUTES ?= 30
TCN_EXTRA ?= --extra-data data/bandai/bandai_h36m17.npz:0.3
train: train-tcn train-seq2seq train-framewise

train-tcn: setup
	$(BIN)/poselift train --model tcn --minutes $(TCN_MINUTES) --out runs/tcn $(TCN_EXTRA) \
	    --export poselift/weights/tcn

train-seq2seq: setup
	$(BIN)/poselift train --model seq2seq --minutes $(SEQ2SEQ_MINUTES) --threads 1 --out runs/seq2seq \
	    --export poselift/weights/seq2seq

train-framewise: setup
	$(BIN)/poselift train --model framewise --minutes $(FRAMEWISE_MINUTES) --threads 1 --out runs/framewise \
	    --export poselift/weights/framewise

VAL := data/mocap/cmu_h36m17_val.npz
# TRACKS=DIR (the output folder of `poselift video`) also scores skeleton consistency on that real detector output.
TRACKS ?=
eval: setup
	$(BIN)/poselift evaluate --data $(VAL) --checkpoint tcn --checkpoint seq2seq --checkpoint framewise \
	    --json eval/val.json --plot eval/val.png $(if $(TRACKS),--tracks $(TRACKS))

# The speed tables, written to bench/RESULTS.md: the model alone (bench.model), then one `poselift serve` on a
# throw-away redis-server (free port, never 6379) under REST and StreamLift load (bench.load), then a py-spy
# profile of it under 64 streams (bench.profile, bench/PROFILE.md), then the floors any Python server meets on
# this machine (bench.floors, bench/FLOORS.md); ~6 minutes (~10 on a slow VM).
# Figures are only as good as the machine is idle. BENCH_ARGS adds flags, e.g. BENCH_ARGS="--threads 1".
BENCH_ARGS ?=
bench: setup
	$(BIN)/python -m bench.load --model-bench --out bench/RESULTS.md $(BENCH_ARGS)
	$(BIN)/python -m bench.profile --out bench/PROFILE.md
	$(BIN)/python -m bench.floors --out bench/FLOORS.md

# Reliability soak (tests/service/rpc/test_soak.py): 64 gRPC sessions for 60 s through two replicas on an
# append-only Redis, with Redis restarted twice and a replica SIGKILLed; prints its summary. Environment:
# POSELIFT_SOAK_SESSIONS, POSELIFT_SOAK_SECONDS, POSELIFT_SOAK_FPS; POSELIFT_SOAK_REPORT=FILE writes it as JSON.
soak: setup
	$(BIN)/pytest -q -m soak -s

# The image built from the Dockerfile and run with podman, then docker-compose.yml under podman-compose (Redis,
# two replicas, nginx), a stream surviving a replica SIGKILL (tests/deploy/test_container.py); prints the
# build time and image size. Needs root: installs podman, runc and debootstrap (apt-get) and makes local
# stand-ins of the base images once (deploy/podman, no registry needed); a cold run takes ~10 minutes.
container-tools:
	sh deploy/podman/setup.sh
	sh deploy/podman/make-bases.sh

image-test: setup container-tools
	$(BIN)/pytest -q -m container -s tests/deploy

# On a machine with CUDA: the cuda-marked tests, the model bench and a serving bench on the GPU, written to
# bench/GPU.md (bench/gpu_check.py; exits 2 with "no CUDA device" elsewhere). GPU_ARGS="--quick": a few minutes.
gpu-check: setup
	$(BIN)/python -m bench.gpu_check $(GPU_ARGS)

# The carry kit for a CUDA machine with PyTorch and no network (wheels, redis-server, packed Bandai data) into
# the git-ignored .offline-kit/; how to use it: deploy/gpu-offline/README.md. Downloads from PyPI.
gpu-kit: setup
	bash deploy/gpu-offline/build.sh

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
