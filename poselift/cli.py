"""The `poselift` command: `poselift train | evaluate | serve …`.

The one place that composes the packages. Each sub-command's package (`trainer`, `service`) is imported only
when that sub-command runs, so the core never depends on them and a serving image needs no training extras.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

# sub-command -> (module, function taking the remaining argv and returning an exit code, help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "train": ("trainer.cli", "train_main", "train a lifter on mocap seen through virtual cameras"),
    "evaluate": ("trainer.cli", "evaluate_main", "score checkpoints on the fixed evaluation rig"),
    "serve": (
        "service.cli",
        "main",
        "serve REST and gRPC with the configured checkpoint (POSELIFT_* settings)",
    ),
}


def _usage() -> str:
    lines = ["usage: poselift {" + ",".join(COMMANDS) + "} [options]", "", "2D keypoints -> 3D poses", ""]
    lines += [f"  {name:<9} {help_}" for name, (_, _, help_) in COMMANDS.items()]
    lines += ["", "`poselift COMMAND --help` describes each command's options."]
    return "\n".join(lines)


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
