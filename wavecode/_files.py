"""Atomic file writes: a temp file next to the target, then a rename, so that a failed or
interrupted write leaves the old file as it was."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

__all__ = ["write_atomic"]


def write_atomic(path, write: Callable[[Path], None]) -> None:
    """Write ``path`` through ``write(temp_path)``, then rename the temp file over it.

    The temp file keeps the target's suffix (writers that pick a format or append one by the
    suffix see the right one) and is removed on failure; an ``OSError`` names ``path``, not the
    temp file. Missing parent folders are created.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        if not path.parent.exists():
            path.parent.mkdir(parents=True)
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    finally:
        if tmp.exists():
            tmp.unlink()
