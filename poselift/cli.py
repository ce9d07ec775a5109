"""The `poselift` command. The one place that composes the packages: each sub-command imports its
package (`trainer`, `service`) only when run, so the core itself never depends on them."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="poselift", description="2D keypoints -> temporally consistent 3D poses"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    from trainer.cli import add_evaluate_args, add_train_args

    add_train_args(sub.add_parser("train", help="train a lifter on mocap through virtual cameras"))
    add_evaluate_args(sub.add_parser("evaluate", help="score checkpoints on the fixed evaluation rig"))
    sub.add_parser("serve", help="serve REST (and gRPC) with the configured checkpoint")
    args = parser.parse_args(argv)
    if args.command == "train":
        from trainer.cli import run_train

        return run_train(args)
    if args.command == "evaluate":
        from trainer.cli import run_evaluate

        return run_evaluate(args)
    from service.cli import serve

    return int(serve())


if __name__ == "__main__":
    sys.exit(main())
