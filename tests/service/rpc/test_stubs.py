"""The committed gRPC stubs are what `make proto` generates from protos/ now."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.service.rpc.rpckit import ROOT

PROTO = ROOT / "protos" / "poselift" / "v1" / "lifter.proto"
GEN = ROOT / "client" / "poselift_client" / "gen"


def test_stubs_committed_are_current(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    subprocess.run([sys.executable, str(ROOT / "protos" / "generate.py"), "--out", str(out)], check=True)
    fresh = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    committed = {
        p.relative_to(GEN): p.read_bytes()
        for p in GEN.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert sorted(fresh) == sorted(committed), "run `make proto`: the set of generated files changed"
    stale = [str(name) for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"run `make proto`: {stale} differ from what protos/ generates"
