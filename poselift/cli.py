"""The `poselift` command: `poselift train | evaluate | serve | export …`.

The one place that composes the packages. Each sub-command's package (`trainer`, `service`) is imported only
when that sub-command runs, so the core never depends on them and a serving image needs no training extras.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Callable
from pathlib import Path

# sub-command -> (module, function taking the remaining argv and returning an exit code, help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "train": ("trainer.cli", "train_main", "train a lifter on mocap seen through virtual cameras"),
    "evaluate": ("trainer.cli", "evaluate_main", "score checkpoints on the fixed evaluation rig"),
    "serve": (
        "service.cli",
        "main",
        "serve REST and gRPC with the configured checkpoint (POSELIFT_* settings)",
    ),
    "export": ("poselift.cli", "export_main", "export a checkpoint's network to ONNX, checked against torch"),
    "export-bvh": ("poselift.outputs_cli", "export_bvh_main", "write a poses file as a BVH animation"),
    "render": ("poselift.outputs_cli", "render_main", "draw a poses file (2D input beside 3D) to mp4/gif"),
    "video": (
        "poselift_video.cli",
        "video_main",
        "find, track and lift the people in a video (docs/video.md)",
    ),
}


def _usage() -> str:
    lines = ["usage: poselift {" + ",".join(COMMANDS) + "} [options]", "", "2D keypoints -> 3D poses", ""]
    lines += [f"  {name:<11} {help_}" for name, (_, _, help_) in COMMANDS.items()]
    lines += ["", "`poselift COMMAND --help` describes each command's options."]
    return "\n".join(lines)


def export_main(argv: list[str]) -> int:
    """`poselift export --onnx OUT.onnx [--checkpoint NAME_OR_PATH]`: export, then compare with torch."""
    parser = argparse.ArgumentParser(
        prog="poselift export",
        description="Export a checkpoint's network (newest-frame pose, dynamic batch) to ONNX for the "
        "'onnx' backend, and print its largest difference from eager torch on random windows.",
    )
    parser.add_argument("--onnx", type=Path, required=True, metavar="OUT.onnx", help="file to write")
    parser.add_argument("--checkpoint", default="tcn", help="shipped name or checkpoint path (default: tcn)")
    parser.add_argument("--windows", type=int, default=256, help="random windows to compare on")
    args = parser.parse_args(argv)

    from poselift.export import TOLERANCE_MM, export_onnx, random_windows
    from poselift.lifter import load_lifter
    from poselift.runtimes import OnnxRuntime, max_abs_diff_mm

    try:
        lifter = load_lifter(args.checkpoint, "cpu", backend="torch")
    except (FileNotFoundError, ValueError) as error:
        print(f"poselift export: {error}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        data = export_onnx(lifter.model, lifter.checkpoint_id, args.onnx)
    except OSError as error:  # the output path cannot be written
        print(f"poselift export: cannot write {args.onnx}: {error.strerror or error}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    print(
        f"wrote {args.onnx} ({len(data) / 1e6:.1f} MB) from checkpoint {lifter.checkpoint_id} "
        f"({lifter.model.config.kind}, window {lifter.window}) in {seconds:.1f} s"
    )
    windows, scores = random_windows(args.windows, lifter.window)
    diff = max_abs_diff_mm(lifter.runtime, OnnxRuntime(args.onnx), windows, scores)
    verdict = "ok" if diff <= TOLERANCE_MM else "TOO LARGE"
    print(
        f"max |onnxruntime - torch| over {args.windows} random windows: {diff:.2e} mm "
        f"({verdict}; tolerance {TOLERANCE_MM:g} mm)"
    )
    return 0 if diff <= TOLERANCE_MM else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        print(f"poselift: unknown command {argv[0]!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module, function, _ = COMMANDS[argv[0]]
    entry: Callable[[list[str]], int] = getattr(importlib.import_module(module), function)
    return int(entry(argv[1:]))


if __name__ == "__main__":
    sys.exit(main())
