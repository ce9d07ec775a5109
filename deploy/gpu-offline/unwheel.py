"""Fallback for env.sh when pip cannot install the wheels: unpack each wheel into SITE as `pip install
--target` would for these wheels (all root-is-purelib or platlib, no scripts needed).

Usage: python3 deploy/gpu-offline/unwheel.py SITE WHEEL...
"""

import shutil
import sys
import zipfile
from pathlib import Path


def main() -> int:
    site = Path(sys.argv[1])
    site.mkdir(parents=True, exist_ok=True)
    for wheel in sys.argv[2:]:
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(site)
        for data in site.glob("*.data"):  # NAME.data/{purelib,platlib}/... belongs at the top
            for kind in ("purelib", "platlib"):
                for item in (data / kind).glob("*") if (data / kind).is_dir() else []:
                    if item.is_dir():
                        shutil.copytree(item, site / item.name, dirs_exist_ok=True)
                    else:
                        shutil.copy2(item, site / item.name)
            shutil.rmtree(data)
        print(f"unpacked {Path(wheel).name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
