"""Pack data/bandai/bandai_h36m17.npz (78 MB) for a device call's 64 MiB upload: positions quantised to
0.5 mm (max error 0.25 mm), second differences along the frames, lzma: ~11.7 MB in .offline-kit/bandai/
(bandai_pos.xz, and bandai_meta.npz with the shape and the file's other arrays unchanged).
unpack_bandai.py rebuilds the npz on the GPU machine.

Usage (from anywhere; build.sh runs it): python deploy/gpu-offline/pack_bandai.py
"""

import lzma
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "data" / "bandai" / "bandai_h36m17.npz"
PACKED = ROOT / ".offline-kit" / "bandai"

z = np.load(SOURCE)
positions = z["positions"]
q = np.round(positions.astype(np.float64) * 2).astype(np.int32)
d2 = np.diff(np.diff(q, axis=0, prepend=0), axis=0, prepend=0)  # two cumsums invert it
rest = {k: z[k] for k in z.files if k != "positions"}
PACKED.mkdir(parents=True, exist_ok=True)
np.savez(PACKED / "bandai_meta.npz", shape=np.array(q.shape), **rest)
(PACKED / "bandai_pos.xz").write_bytes(lzma.compress(d2.astype(np.int32).tobytes(), preset=6))
back = np.cumsum(np.cumsum(d2.astype(np.int64), axis=0), axis=0) / 2.0  # what unpack_bandai.py computes
error = float(np.abs(back.astype(np.float32) - positions).max())
assert error <= 0.25 + 1e-3, f"round trip error {error} mm"
size = sum(f.stat().st_size for f in PACKED.iterdir())
print(f"bandai {q.shape} packed into {PACKED} ({size / 1e6:.1f} MB, max error {error:.3f} mm)")
