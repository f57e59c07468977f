"""Range checks of run settings: one clear ``ValueError`` before any work starts."""
from __future__ import annotations

import math


def check_settings(cfg, positive=(), non_negative=(), positive_float=(), non_negative_float=(),
                   optional_positive=(), seeds=("seed",)) -> None:
    """Raise ``ValueError`` naming the first field of ``cfg`` out of its range (NaN and
    infinity included; ``seeds``: what numpy and torch both take, 0 .. 2**63 - 1)."""
    def bad(name, want):
        raise ValueError(f"{name.replace('_', '-')} must be {want}, not {getattr(cfg, name)!r}")
    for name in seeds:
        if not 0 <= getattr(cfg, name) < 2 ** 63:
            bad(name, "in 0..2**63 - 1")
    for name in positive:
        if not getattr(cfg, name) >= 1:
            bad(name, ">= 1")
    for name in non_negative:
        if not getattr(cfg, name) >= 0:
            bad(name, ">= 0")
    for name in positive_float:
        v = getattr(cfg, name)
        if not (math.isfinite(v) and v > 0):
            bad(name, "a finite number > 0")
    for name in non_negative_float:
        v = getattr(cfg, name)
        if not (math.isfinite(v) and v >= 0):
            bad(name, "a finite number >= 0")
    for name in optional_positive:
        v = getattr(cfg, name)
        if v is not None and not (math.isfinite(v) and v > 0):
            bad(name, "> 0")
