"""Keep numba's on-disk kernel cache consistent across source changes.

Numba keys a cached kernel on the timestamp of the file that defines it, not on the files of
the kernels it inlines: after ``_dwt.py`` changes (a ``git pull`` on an editable install, a
developer's edit), the cached ``_scan`` kernels would keep running the old DWT. So the package
stamps its cache folder with a hash of all its kernel sources and numba's version, and drops its
cached kernels when the stamp differs. Runs at import, before any kernel is loaded; never fails
the import (a read-only or missing cache folder just means numba compiles as usual).
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

STAMP = "wavecode-kernels.stamp"


def sources_hash(modules) -> str:
    """Hash of the modules' source files and numba's version."""
    import numba

    h = hashlib.sha1(numba.__version__.encode())
    for m in sorted(modules, key=lambda m: m.__name__):
        h.update(m.__name__.encode())
        h.update(Path(m.__file__).read_bytes())
    return h.hexdigest()


def purge_stale(modules) -> list[str]:
    """Delete the cached kernels of ``modules`` from their cache folders when those were built
    from other sources; returns the deleted file names."""
    removed: list[str] = []
    try:
        stamp = sources_hash(modules)
        stems = tuple(Path(m.__file__).stem + "." for m in modules)
        folders = set()
        for m in modules:
            for obj in vars(m).values():
                cache = getattr(obj, "_cache", None)
                path = getattr(cache, "_cache_path", None)
                if path:
                    folders.add(Path(path))
        for folder in folders:
            mark = folder / STAMP
            if not folder.is_dir() or (mark.is_file() and mark.read_text() == stamp):
                continue
            for f in folder.iterdir():
                if f.name.startswith(stems) and f.suffix in (".nbi", ".nbc"):
                    try:
                        f.unlink()
                        removed.append(f.name)
                    except OSError:
                        pass
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".stamp-")
            with os.fdopen(fd, "w") as fh:
                fh.write(stamp)
            os.replace(tmp, mark)
    except OSError:
        pass
    return removed
