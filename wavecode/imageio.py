"""Reading and writing 8-bit images with Pillow (atomic writes, one-line errors)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ._files import write_atomic

__all__ = ["read_image", "write_image", "to_uint8", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".pnm", ".tif", ".tiff",
                  ".webp", ".gif")


def read_image(path, mode: str | None = None) -> np.ndarray:
    """Read an 8-bit image as uint8 ``(H, W)`` (grayscale) or ``(H, W, 3)`` (colour).

    Parameters
    ----------
    mode : {None, "L", "RGB"}
        Force grayscale or colour; ``None`` keeps grayscale images grayscale and turns everything
        else (palette, RGBA, CMYK ...) into RGB.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I", "F") and mode is None:
                raise ValueError(f"{path}: {im.mode} images are not supported (8-bit only)")
            want = mode or ("L" if im.mode in ("L", "1", "LA") else "RGB")
            if want not in ("L", "RGB"):
                raise ValueError(f"mode must be 'L' or 'RGB', not {mode!r}")
            return np.asarray(im.convert(want), dtype=np.uint8).copy()
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"{path}: is a directory") from None
    except UnidentifiedImageError:
        raise ValueError(f"{path}: not an image Pillow can read") from None
    except Image.DecompressionBombError as exc:  # Pillow's guard against huge images
        raise ValueError(f"{path}: too large ({exc})") from None
    except (OSError, SyntaxError) as exc:
        raise ValueError(f"{path}: cannot read image ({exc})") from None


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Float images in [0, 1] -> uint8 (rounded)."""
    return np.clip(np.rint(np.asarray(images, np.float64) * 255.0), 0, 255).astype(np.uint8)


def write_image(path, image: np.ndarray) -> None:
    """Write a uint8 (or [0, 1] float) image; the format follows the suffix. Atomic: a temp file
    in the same folder is renamed over the target."""
    from PIL import Image

    a = np.asarray(image)
    if a.dtype != np.uint8:
        a = to_uint8(a)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] != 3):
        raise ValueError(f"cannot write an image of shape {a.shape}")
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unknown image format {path.suffix!r}")
    write_atomic(path, lambda tmp: Image.fromarray(a).save(tmp, format=fmt))
