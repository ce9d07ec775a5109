"""The gRPC contract: the proto is DESIGN.md's; the committed stubs are what `make proto` generates now."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.service.rpc.rpckit import ROOT

PROTO = ROOT / "protos" / "poselift" / "v1" / "lifter.proto"
GEN = ROOT / "service" / "rpc" / "gen"
DESIGN = ROOT.parent / "shared" / "DESIGN.md"


def _code_only(proto: str) -> str:
    """The proto without comments and with whitespace normalised: what defines the contract."""
    proto = re.sub(r"//[^\n]*", "", proto)
    return re.sub(r"\s+", " ", proto).strip()


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


def test_stubs_proto_is_the_design_contract() -> None:
    if not DESIGN.exists():
        pytest.skip(f"{DESIGN} is not beside the repository")
    blocks = re.findall(r"```proto\n(.*?)```", DESIGN.read_text(), flags=re.DOTALL)
    assert len(blocks) == 1
    assert _code_only(PROTO.read_text()) == _code_only(blocks[0])
