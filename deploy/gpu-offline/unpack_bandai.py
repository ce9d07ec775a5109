"""Rebuild data/bandai/bandai_h36m17.npz on the GPU machine from .offline-kit/bandai/ (pack_bandai.py's
form: positions within 0.25 mm of the original, the other arrays unchanged). A file already there is left
alone (on the dev machine that is the tracked original), unless --force; --out writes elsewhere.

Usage (from anywhere): python3 deploy/gpu-offline/unpack_bandai.py [--out FILE] [--force]
"""

import argparse
import lzma
import os
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
PACKED = ROOT / ".offline-kit" / "bandai"

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--out", type=Path, default=ROOT / "data" / "bandai" / "bandai_h36m17.npz")
parser.add_argument("--force", action="store_true", help="replace --out if it exists")
args = parser.parse_args()
if args.out.exists() and not args.force:
    print(f"bandai: {args.out} exists, left alone (--force replaces it)")
    raise SystemExit(0)
m = np.load(PACKED / "bandai_meta.npz")
d2 = np.frombuffer(lzma.decompress((PACKED / "bandai_pos.xz").read_bytes()), np.int32).reshape(m["shape"])
d1 = np.cumsum(d2.astype(np.int64), axis=0)
q = np.cumsum(d1, axis=0)
pos = (q / 2.0).astype(np.float32)
args.out.parent.mkdir(parents=True, exist_ok=True)
tmp = args.out.with_name(args.out.name + ".tmp.npz")  # savez appends .npz to other names
np.savez(tmp, positions=pos, **{k: m[k] for k in m.files if k != "shape"})
os.replace(tmp, args.out)
print("bandai", pos.shape, "->", args.out)
