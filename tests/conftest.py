"""Shared test set-up: single-threaded torch (tests run beside each other and beside training on 2 cores;
OpenMP threads spinning against each other make small models orders of magnitude slower)."""

import torch

torch.set_num_threads(1)
