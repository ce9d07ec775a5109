"""Rewrite a wheel's zip members with LZMA compression (same names, contents, modes, times): a smaller file
that pip (stdlib zipfile) installs the same way. RECORD hashes cover contents, so they stay valid.

Usage: python3 repack_lzma.py WHEEL...   (build.sh runs it on .offline-kit/wheels/*.whl)
"""

import os
import sys
import zipfile

for src in sys.argv[1:]:
    tmp = src + ".tmp"
    with zipfile.ZipFile(src) as zi, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_LZMA) as zo:
        for info in zi.infolist():
            ni = zipfile.ZipInfo(info.filename, info.date_time)
            ni.external_attr, ni.create_system = info.external_attr, info.create_system
            ni.compress_type = zipfile.ZIP_LZMA
            zo.writestr(ni, zi.read(info))
    # verify: same names and bytes
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(tmp) as b:
        assert a.namelist() == b.namelist()
        assert all(a.read(n) == b.read(n) for n in a.namelist())
    before, after = os.path.getsize(src), os.path.getsize(tmp)
    if after < before:
        os.replace(tmp, src)
    else:
        os.remove(tmp)
    print(f"{os.path.basename(src)}: {before} -> {min(before, after)}")
