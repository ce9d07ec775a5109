"""Command-line entry points of the trainer: `poselift train` and `poselift evaluate`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from poselift.checkpoint import SHIPPED
from poselift.lifter import Lifter, load_lifter
from poselift.losses import LossWeights
from poselift.model import LifterConfig
from trainer.augment import NO_AUGMENT, AugmentConfig
from trainer.mocap import split_path
from trainer.train import TrainConfig, train

# Recipes for CPU budgets (docs/training.md); the paper's hidden 1024 / lr 1e-5 / 100 epochs assume a GPU.
RECIPES: dict[str, dict[str, float]] = {
    # beta: the paper's 5 penalises the *true* motion of our 25–60 fps windows more than the position error we
    # can hope for (docs/training.md shows the arithmetic), so the CPU recipe uses 1.
    "seq2seq": {
        "hidden": 512,
        "window": 5,
        "dropout": 0.1,
        "lr": 1e-3,
        "batch": 128,
        "decay_steps": 600,
        "beta": 1.0,
    },
    # VideoPose3D's causal temporal convolution, 27 frames (widths 3·3·3), 512 channels; MPJPE loss
    # plus offline, pelvis and bone heads (trainer.train.causal_loss); docs/results.md: what else was tried.
    "tcn": {
        "hidden": 512,
        "window": 27,
        "dropout": 0.25,
        "lr": 1e-3,
        "batch": 256,
        "decay_steps": 1000,
        "beta": 0.0,
    },
    "framewise": {
        "hidden": 1024,
        "window": 1,
        "dropout": 0.2,
        "lr": 1e-3,
        "batch": 256,
        "decay_steps": 1000,
        "beta": 0.0,
    },
}


def add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", choices=sorted(RECIPES), default="seq2seq")
    p.add_argument("--data", default=None, help="training split npz (default: the CMU train split)")
    p.add_argument(
        "--val", default=None, help="validation split npz (default: the CMU val split; '' to skip)"
    )
    p.add_argument("--out", default=None, help="run directory (default runs/<model>)")
    p.add_argument("--export", default=None, help="also write the best checkpoint here (no suffix)")
    p.add_argument("--hidden", type=int, default=None)
    p.add_argument("--window", type=int, default=None)
    p.add_argument("--dropout", type=float, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--decay-steps", type=int, default=None, help="steps per ×0.96 learning-rate decay")
    p.add_argument(
        "--beta", type=float, default=None, help="weight of the temporal-smoothness term (paper: 5)"
    )
    p.add_argument("--steps", type=int, default=1_000_000, help="maximum optimisation steps")
    p.add_argument("--minutes", type=float, default=None, help="wall-clock budget")
    p.add_argument("--val-every-s", type=float, default=300.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    p.add_argument(
        "--loader-workers",
        type=int,
        default=1,
        help="processes drawing training windows (0: in the training process); on a GPU machine, about "
        "the CPU cores less two: there the numpy sampler, not the model, sets the pace",
    )
    p.add_argument("--no-augment", action="store_true", help="clean projections only (for tests)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument(
        "--extra-data",
        action="append",
        default=[],
        metavar="NPZ:SHARE",
        help="tcn: another training set and the share of windows drawn from it, e.g. "
        "data/bandai/bandai_h36m17.npz:0.7 (repeatable; the main --data keeps the rest)",
    )
    p.add_argument("--init-from", default=None, help="start from this checkpoint's weights (fresh optimiser)")
    p.add_argument(
        "--final-lr-ratio",
        type=float,
        default=None,
        help="decay the learning rate exponentially over --minutes to lr × this (tcn default 0.05)",
    )


def run_train(args: argparse.Namespace) -> int:
    recipe = RECIPES[args.model]

    def pick(name: str) -> float:
        """The command-line value if given, else the model's recipe."""
        value = getattr(args, name)
        return float(recipe[name] if value is None else value)

    window = int(pick("window"))
    model = LifterConfig(
        kind=args.model,
        window=window,
        hidden_size=int(pick("hidden")),
        dropout=pick("dropout"),
        filter_widths=_filter_widths(window) if args.model == "tcn" else (),
        # The tcn serves the mean of each window and its mirror image (its validation here too): on val it
        # cost nothing in accuracy anywhere and gained 0.6-0.8 mm P1 (docs/results.md).
        test_time_flip=args.model == "tcn",
    )
    extra = []
    for item in args.extra_data:
        path, _, share = item.rpartition(":")
        extra.append((path, float(share)))
    final_lr = (
        args.final_lr_ratio if args.final_lr_ratio is not None else (0.05 if args.model == "tcn" else 0.0)
    )
    cfg = TrainConfig(
        model=model,
        train_data=args.data,
        val_data=args.val or None,
        out_dir=args.out or f"runs/{args.model}",
        batch_size=int(pick("batch")),
        lr=pick("lr"),
        lr_decay_steps=int(pick("decay_steps")),
        max_steps=args.steps,
        minutes=args.minutes,
        val_every_s=args.val_every_s,
        seed=args.seed,
        threads=args.threads,
        loader_workers=args.loader_workers,
        export=args.export,
        resume=args.resume,
        loss=LossWeights(beta=pick("beta")),
        augment=NO_AUGMENT if args.no_augment else AugmentConfig(),
        extra_data=tuple(extra),
        final_lr_ratio=final_lr,
        init_from=args.init_from,
    )
    best = train(cfg)
    print(json.dumps({"best": best}))
    return 0


def _filter_widths(window: int) -> tuple[int, ...]:
    """Kernel widths of 3 whose product is `window` (27, 81, 243 …); ValueError for other windows."""
    widths: list[int] = []
    rest = window
    while rest > 1 and rest % 3 == 0:
        widths.append(3)
        rest //= 3
    if rest != 1 or len(widths) < 2:
        raise ValueError(f"a tcn window must be a power of 3 of at least 9 (27, 81, 243), got {window}")
    return tuple(widths)


def add_evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default=None, help="mocap npz to evaluate on (default: the CMU val split)")
    p.add_argument(
        "--checkpoint",
        action="append",
        required=True,
        help="shipped name or checkpoint path; repeat to compare",
    )
    p.add_argument("--json", default=None, help="write all results here")
    p.add_argument("--plot", default=None, help="write a PNG of error vs noise and per-joint error")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--tracks",
        default=None,
        metavar="DIR",
        help="also score skeleton consistency on real detector output: the track_*.npz poses files of "
        "`poselift video --out DIR` (no 3D truth: bone-length CV and left/right asymmetry)",
    )


def train_main(argv: list[str]) -> int:
    """`poselift train …`."""
    parser = argparse.ArgumentParser(prog="poselift train", description="Train a poselift lifter.")
    add_train_args(parser)
    args = parser.parse_args(argv)
    try:  # the CMU splits by default: found by POSELIFT_DATA_DIR or in the source checkout
        args.data = args.data or str(split_path("train"))
        args.val = str(split_path("val")) if args.val is None else args.val
    except FileNotFoundError as error:
        parser.error(str(error))
    return run_train(args)


def evaluate_main(argv: list[str]) -> int:
    """`poselift evaluate …`."""
    parser = argparse.ArgumentParser(
        prog="poselift evaluate", description="Score checkpoints on the fixed rig."
    )
    add_evaluate_args(parser)
    args = parser.parse_args(argv)
    try:
        args.data = args.data or str(split_path("val"))
    except FileNotFoundError as error:
        parser.error(str(error))
    return run_evaluate(args)


def run_evaluate(args: argparse.Namespace) -> int:
    from trainer.evaluate import (
        evaluate_lifters,
        evaluate_tracks,
        format_action_table,
        format_consistency_table,
        format_table,
        format_tracks_table,
        plot_results,
        write_json,
    )
    from trainer.mocap import Mocap

    lifters: dict[str, Lifter] = {}
    for ck in args.checkpoint:
        name = ck if ck in SHIPPED else Path(ck).stem
        lifters[name] = load_lifter(ck, "cpu")
    data = Mocap.load(args.data)
    results = evaluate_lifters(lifters, data, seed=args.seed)
    results["data"] = data.describe()
    results["checkpoints"] = {n: lf.checkpoint_id for n, lf in lifters.items()}
    print(format_table(results))
    print()
    print(format_consistency_table(results))
    print()
    print(format_action_table(results))
    if args.tracks:
        results["tracks"] = evaluate_tracks(lifters, Path(args.tracks))
        print()
        print(format_tracks_table(results["tracks"]))  # type: ignore[arg-type]
    if args.json:
        write_json(results, Path(args.json))
    if args.plot:
        plot_results(results, Path(args.plot))
    return 0
