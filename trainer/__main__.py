"""`python -m trainer` / `torchrun -m trainer`: training (same flags as `poselift train`)."""

import sys

from trainer.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main(sys.argv[1:]))
