"""Where a model runs and in which precision: ``auto`` takes CUDA when there is one; on CUDA the
forward passes run under bf16 autocast (weights, optimizer and loss stay float32)."""
from __future__ import annotations

import contextlib
import os

import torch

__all__ = ["resolve_device", "autocast", "attention_kernels", "PRECISIONS"]

PRECISIONS = ("auto", "fp32", "bf16")


def resolve_device(spec: str | None = "auto") -> torch.device:
    """``auto`` (CUDA if available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``. Under
    ``torchrun`` a bare ``cuda`` means this process's GPU (``LOCAL_RANK``)."""
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise ValueError(f"unknown device {spec!r}: use auto, cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {spec!r}: use auto, cpu, cuda or cuda:N")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {spec!r} asked for, but torch sees no CUDA GPU")
        index = dev.index if dev.index is not None else int(os.environ.get("LOCAL_RANK", "0"))
        if index >= torch.cuda.device_count():
            raise ValueError(f"device cuda:{index} asked for; torch sees "
                             f"{torch.cuda.device_count()} GPU(s)")
        dev = torch.device("cuda", index)
    return dev


def autocast(device: torch.device, precision: str = "auto"):
    """A context for forward passes: bf16 autocast for ``bf16``, and for ``auto`` on CUDA;
    nothing for ``fp32`` (or ``auto`` on the CPU, where bf16 is slower on most processors)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {PRECISIONS}")
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def attention_kernels(device: torch.device):
    """A context for attention on ``device``: on CUDA, SDPA's flash / memory-efficient / math
    kernels but not cuDNN's, which plans per sequence length -- a decoder that grows by one
    position a step re-plans at every step (measured on an H100: 68-77 ms per bf16 decoding
    step with it, 3.0 ms without). Nothing on the CPU. Single use: call it for each ``with``."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel
    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                        SDPBackend.MATH])
