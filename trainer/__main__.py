"""`python -m trainer` / `torchrun -m trainer`: the training entry point (same flags as `poselift train`)."""

import argparse
import sys

from trainer.cli import add_train_args, run_train


def main() -> int:
    parser = argparse.ArgumentParser(prog="trainer", description="Train a poselift lifter.")
    add_train_args(parser)
    return run_train(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
