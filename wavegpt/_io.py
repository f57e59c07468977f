"""Atomic writes of folders (temp folder + rename): a failed write leaves the old one as it was."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["atomic_dir_write"]


def atomic_dir_write(target, write) -> None:
    """Fill a fresh temp folder next to ``target`` with ``write(folder)``, then swap it in."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        write(tmp)
        old = target.with_name(f".{target.name}-old")
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
