"""Copy the viewer's npm dependencies into the page's static folder, or check that the copies are current.

`package-lock.json` pins them; `npm ci` installs them into `web/viewer/node_modules`; this script copies the
files the page imports into `service/api/static/viewer/vendor/` (committed: serving needs no npm) and writes
`vendor/MANIFEST.json` (version, the lock's integrity hash, sha256 of each copied file). It rewrites nothing
that is already current. `--check` changes nothing: it fails when the manifest disagrees with the lock, a
copy with the manifest, or (when node_modules is there) a copy with the installed package.

    npm ci --prefix web/viewer && python web/viewer/vendor.py          # make setup does this
    python web/viewer/vendor.py --check
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
VENDOR = ROOT / "service" / "api" / "static" / "viewer" / "vendor"
MANIFEST = VENDOR / "MANIFEST.json"
# package -> {path under vendor/: path inside the npm package}
FILES: dict[str, dict[str, str]] = {
    "three": {
        "three/three.module.js": "build/three.module.js",
        "three/three.core.js": "build/three.core.js",
        "three/addons/controls/OrbitControls.js": "examples/jsm/controls/OrbitControls.js",
        "three/LICENSE": "LICENSE",
    }
}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _locked(package: str) -> dict[str, str]:
    lock = json.loads((HERE / "package-lock.json").read_text())
    entry = lock["packages"][f"node_modules/{package}"]
    return {"version": entry["version"], "integrity": entry["integrity"]}


def _installed(package: str) -> Path | None:
    """The package in node_modules when it is installed at the locked version, else None."""
    folder = HERE / "node_modules" / package
    meta = folder / "package.json"
    if not meta.is_file() or json.loads(meta.read_text())["version"] != _locked(package)["version"]:
        return None
    return folder


def vendor() -> int:
    manifest: dict[str, dict[str, object]] = {}
    for package, files in FILES.items():
        source = _installed(package)
        if source is None:
            print(f"vendor.py: {package} {_locked(package)['version']} is not installed; run "
                  "`npm ci --prefix web/viewer`", file=sys.stderr)  # fmt: skip
            return 1
        hashes = {}
        for target, inside in files.items():
            data = (source / inside).read_bytes()
            path = VENDOR / target
            if not path.is_file() or path.read_bytes() != data:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                print(f"vendor.py: wrote {path.relative_to(ROOT)}")
            hashes[target] = _sha256(data)
        manifest[package] = {**_locked(package), "files": hashes}
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    if not MANIFEST.is_file() or MANIFEST.read_text() != text:
        MANIFEST.write_text(text)
        print(f"vendor.py: wrote {MANIFEST.relative_to(ROOT)}")
    return 0


def check() -> list[str]:
    """What is out of date (empty when the vendored files are current)."""
    if not MANIFEST.is_file():
        return [f"{MANIFEST.relative_to(ROOT)} is missing"]
    manifest = json.loads(MANIFEST.read_text())
    problems = []
    for package, files in FILES.items():
        entry = manifest.get(package, {})
        locked = _locked(package)
        if {k: entry.get(k) for k in locked} != locked:
            problems.append(f"{package}: the manifest has {entry.get('version')}, the lock {locked}")
        installed = _installed(package)
        for target, inside in files.items():
            path = VENDOR / target
            if not path.is_file():
                problems.append(f"{target} is missing")
                continue
            data = path.read_bytes()
            if _sha256(data) != entry.get("files", {}).get(target):
                problems.append(f"{target} differs from its hash in the manifest")
            if installed is not None and (installed / inside).read_bytes() != data:
                problems.append(f"{target} differs from node_modules/{package}/{inside}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="only check; change nothing")
    if not parser.parse_args().check:
        return vendor()
    problems = check()
    for problem in problems:
        print(f"vendor.py: {problem} (run `make setup`)", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
