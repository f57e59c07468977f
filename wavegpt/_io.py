"""Run-folder I/O: atomic writes of folders (temp folder + rename: a failed write leaves the old
one as it was), and reads that turn a corrupt or missing file into one ``ValueError`` line."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["atomic_dir_write", "read_json", "load_wavegpt", "load_torch"]


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


def _why(exc: BaseException) -> str:
    """An exception as one short line: its type and the first line of its message."""
    msg = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {msg[0]}" if msg else type(exc).__name__


def read_json(path):
    """A JSON file's content; ``ValueError`` naming the file if it is missing or corrupt."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: unreadable ({_why(exc)})") from None


def load_wavegpt(run):
    """The ``WaveGPTForCausalLM`` of a run folder (``run/model``), on the CPU; ``ValueError`` if
    the folder is not a run or its model files are corrupt."""
    from .modeling_wavegpt import WaveGPTForCausalLM

    folder = Path(run) / "model"
    if not (folder / "config.json").exists():
        raise ValueError(f"{run}: not a wavegpt run folder (no model/config.json)")
    try:
        return WaveGPTForCausalLM.from_pretrained(folder)
    except Exception as exc:  # JSON, safetensors and missing-file errors each have their own type
        raise ValueError(f"{folder}: cannot load the model ({_why(exc)})") from None


def load_torch(path, weights_only: bool = True):
    """``torch.load`` of a checkpoint file; ``ValueError`` naming it if it is corrupt."""
    import torch

    try:
        return torch.load(path, weights_only=weights_only)
    except Exception as exc:  # pickle, zip and torch errors alike
        raise ValueError(f"{path}: cannot read ({_why(exc)})") from None
