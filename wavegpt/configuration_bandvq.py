"""Configuration of the band-code VQ-VAE tokenizer (the Wavelet-AR tokenization)."""
from __future__ import annotations

from transformers import PretrainedConfig

__all__ = ["BandVQConfig"]


class BandVQConfig(PretrainedConfig):
    """One-level DWT, then per band a conv encoder, a codebook and a conv decoder.

    Parameters
    ----------
    image_shape : (H, W, C)
        Images the tokenizer takes (H, W even; C 1 or 3).
    wavelet : str
        PyWavelets name of the one-level DWT (``haar`` default, ``db8`` an option).
    codebook_size : int
        Codes per band (the GPT's alphabet).
    code_dim : int
        Dimension of a code vector.
    hidden : int
        Channels of each band's encoder / decoder.
    downsample : int
        Stride-2 stages per encoder: a band of side S gives S / 2**downsample codes per side.
    quantizer : str
        ``"ema"`` (codebook by exponential moving averages) or ``"st"`` (codebook by gradient,
        straight-through estimator, with a codebook loss).
    commitment : float
        Weight of the commitment loss ``|z - sg(q)|^2``.
    ema_decay : float
        Decay of the EMA codebook statistics.
    dead_code_threshold : float
        A code whose EMA usage count falls below this is restarted at a random encoder output.
    image_loss_weight : float
        Weight of the recombined image's (normalised) squared error beside the per-band L1.
    band_mean, band_std : list of float
        Per-band normalisation, measured on the training images.
    pixel_std : float
        Standard deviation of the training pixels (in [0, 1]): normalises the image loss.
    """

    model_type = "bandvq"

    def __init__(self, image_shape=(28, 28, 1), wavelet: str = "haar", codebook_size: int = 256,
                 code_dim: int = 16, hidden: int = 32, downsample: int = 1,
                 quantizer: str = "ema", commitment: float = 0.25, ema_decay: float = 0.99,
                 dead_code_threshold: float = 1.0, image_loss_weight: float = 1.0,
                 band_mean=(0.0, 0.0, 0.0, 0.0), band_std=(1.0, 1.0, 1.0, 1.0),
                 pixel_std: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        shape = [int(x) for x in image_shape]
        self.image_shape = shape + [1] if len(shape) == 2 else shape
        self.wavelet = wavelet
        self.codebook_size = int(codebook_size)
        self.code_dim = int(code_dim)
        self.hidden = int(hidden)
        self.downsample = int(downsample)
        self.quantizer = quantizer
        self.commitment = float(commitment)
        self.ema_decay = float(ema_decay)
        self.dead_code_threshold = float(dead_code_threshold)
        self.image_loss_weight = float(image_loss_weight)
        self.band_mean = [float(x) for x in band_mean]
        self.band_std = [float(x) for x in band_std]
        self.pixel_std = float(pixel_std)

    def validate(self) -> None:
        """Raise ``ValueError`` on settings no model can be built from."""
        if len(self.image_shape) != 3:
            raise ValueError(f"image_shape must be (H, W, C), not {self.image_shape}")
        h, w, c = self.image_shape
        f = 2 ** (self.downsample + 1)
        if h % f or w % f:
            raise ValueError(f"image side {h}x{w} must be divisible by {f} (one DWT level and "
                             f"{self.downsample} stride-2 stages)")
        if c not in (1, 3):
            raise ValueError(f"images must have 1 or 3 channels, not {c}")
        if self.quantizer not in ("ema", "st"):
            raise ValueError(f"quantizer must be 'ema' or 'st', not {self.quantizer!r}")
        if not 2 <= self.codebook_size <= 65535:
            raise ValueError(f"codebook size must be in 2..65535, not {self.codebook_size}")
        if len(self.band_mean) != 4 or len(self.band_std) != 4:
            raise ValueError("band_mean and band_std need one value per band (4)")

    @property
    def code_shape(self) -> tuple[int, int, int]:
        """(bands, rows, cols) of an image's codes."""
        f = 2 ** (self.downsample + 1)
        return 4, self.image_shape[0] // f, self.image_shape[1] // f
