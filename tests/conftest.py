"""Shared test set-up: single-threaded torch (tests run beside each other and beside training on 2 cores;
OpenMP threads spinning against each other make small models orders of magnitude slower), and ONNX exports
cached in a directory of this run, never in the user's ~/.cache (replicas the tests start inherit it)."""

import atexit
import os
import shutil
import tempfile

import torch

torch.set_num_threads(1)
os.environ["POSELIFT_CACHE_DIR"] = tempfile.mkdtemp(prefix="poselift-test-cache-")
atexit.register(shutil.rmtree, os.environ["POSELIFT_CACHE_DIR"], ignore_errors=True)
