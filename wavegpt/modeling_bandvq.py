"""Band-code VQ-VAE: the tokenization of Wavelet-AR, as the comparison baseline.

An image is split by a one-level DWT into LL, LH, HL, HH. Each band has its own conv encoder,
codebook and conv decoder (nothing is shared between bands; four separate nets measured faster
on a CPU than one grouped net). The loss is the per-band L1 of the reconstructed bands plus the
squared error of the image recombined by the inverse DWT, plus the commitment loss. Codebooks
are learned by exponential moving averages (default) or by gradient through the straight-through
estimator, and codes that fall out of use are restarted at random encoder outputs.

An image's tokens are its codes, band by band (LL, LH, HL, HH), each band in raster order.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from transformers import AutoConfig, AutoModel, PreTrainedModel

from .band_dwt import OneLevelDWT
from .configuration_bandvq import BandVQConfig

__all__ = ["BandVQModel", "VectorQuantizer"]

N_BANDS = 4


class VectorQuantizer(nn.Module):
    """``groups`` independent codebooks of ``n_codes`` vectors of dimension ``dim``."""

    def __init__(self, groups: int, n_codes: int, dim: int, ema: bool = True,
                 decay: float = 0.99, dead_threshold: float = 1.0, commitment: float = 0.25):
        super().__init__()
        self.ema, self.decay, self.dead_threshold = ema, decay, dead_threshold
        self.commitment = commitment
        self.codebook = nn.Parameter(torch.randn(groups, n_codes, dim), requires_grad=not ema)
        self.register_buffer("usage", torch.zeros(groups, n_codes))         # EMA code counts
        self.register_buffer("code_sum", torch.zeros(groups, n_codes, dim))  # EMA code sums
        self.register_buffer("initialized", torch.zeros(()))

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """Indices (G, N) of the nearest codes of vectors ``flat`` (G, N, D)."""
        e = self.codebook                                                     # (G, K, D)
        d = (flat.pow(2).sum(-1, keepdim=True) - 2 * flat @ e.transpose(1, 2)
             + e.pow(2).sum(-1)[:, None, :])                                  # (G, N, K)
        return d.argmin(-1)

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        """Code vectors (G, N, D) of indices (G, N)."""
        return torch.gather(self.codebook, 1,
                            idx[..., None].expand(-1, -1, self.codebook.shape[-1]))

    @torch.no_grad()
    def _init_from(self, flat: torch.Tensor) -> None:
        g, n, _ = flat.shape
        k = self.codebook.shape[1]
        pick = torch.randint(0, n, (g, k), device=flat.device)
        start = torch.gather(flat, 1, pick[..., None].expand(-1, -1, flat.shape[-1]))
        self.codebook.data.copy_(start)
        self.code_sum.copy_(start)
        self.usage.fill_(1.0)
        self.initialized.fill_(1.0)

    @torch.no_grad()
    def _update(self, flat: torch.Tensor, idx: torch.Tensor) -> int:
        """EMA statistics (and, with ``ema``, the codebook); restart dead codes. Returns how
        many codes were restarted."""
        g, n, d = flat.shape
        k = self.codebook.shape[1]
        onehot = F.one_hot(idx, k).to(flat.dtype)                             # (G, N, K)
        self.usage.mul_(self.decay).add_(onehot.sum(1), alpha=1 - self.decay)
        self.code_sum.mul_(self.decay).add_(onehot.transpose(1, 2) @ flat, alpha=1 - self.decay)
        if self.ema:
            total = self.usage.sum(1, keepdim=True)
            smoothed = (self.usage + 1e-5) / (total + k * 1e-5) * total       # Laplace
            self.codebook.data.copy_(self.code_sum / smoothed[..., None])
        dead = self.usage < self.dead_threshold                               # (G, K)
        n_dead = int(dead.sum())
        if n_dead:
            pick = torch.randint(0, n, (g, k), device=flat.device)
            fresh = torch.gather(flat, 1, pick[..., None].expand(-1, -1, d))  # (G, K, D)
            self.codebook.data[dead] = fresh[dead]
            self.code_sum[dead] = fresh[dead]
            self.usage[dead] = 1.0
        return n_dead

    def forward(self, z: torch.Tensor):
        """z (B, G, D, h, w) -> quantized z (straight-through), indices (B, G, h, w), loss,
        restarted codes."""
        b, g, d, h, w = z.shape
        flat = z.permute(1, 0, 3, 4, 2).reshape(g, b * h * w, d)             # (G, N, D)
        if self.training and not bool(self.initialized):
            self._init_from(flat.detach())
        idx = self.nearest(flat.detach())                                     # (G, N)
        q = self.lookup(idx)                                                  # (G, N, D)
        loss = self.commitment * F.mse_loss(flat, q.detach())
        if not self.ema:
            loss = loss + F.mse_loss(q, flat.detach())
        restarted = 0
        if self.training:
            restarted = self._update(flat.detach(), idx)
        q = flat + (q - flat).detach()                                        # straight-through
        q = q.reshape(g, b, h, w, d).permute(1, 0, 4, 2, 3)                   # (B, G, D, h, w)
        return q, idx.reshape(g, b, h, w).transpose(0, 1), loss, restarted


def _stack(cin: int, hidden: int, cout: int, n_down: int, up: bool) -> nn.Sequential:
    """One band's encoder (``n_down`` stride-2 convs) or decoder (nearest upsampling + conv,
    which was faster than a transposed conv on a CPU and has no checkerboard)."""
    c = hidden
    layers = [nn.Conv2d(cin, c, 3, padding=1), nn.GELU()]
    for _ in range(n_down):
        layers += ([nn.Upsample(scale_factor=2), nn.Conv2d(c, c, 3, padding=1)] if up else
                   [nn.Conv2d(c, c, 4, stride=2, padding=1)]) + [nn.GELU()]
    layers += [nn.Conv2d(c, c, 3, padding=1), nn.GELU(),
               nn.Conv2d(c, cout, 3 if up else 1, padding=1 if up else 0)]
    return nn.Sequential(*layers)


class BandVQModel(PreTrainedModel):
    """One VQ-VAE per wavelet band. ``forward(images)`` returns the training loss and its parts;
    :meth:`encode` / :meth:`decode` map uint8 images to codes (N, 4, h, w) and back."""

    config_class = BandVQConfig
    main_input_name = "pixel_values"

    def __init__(self, config: BandVQConfig):
        config.validate()
        super().__init__(config)
        h, w, c = config.image_shape
        self.dwt = OneLevelDWT(config.wavelet, h, w)
        self.encoders = nn.ModuleList(
            _stack(c, config.hidden, config.code_dim, config.downsample, up=False)
            for _ in range(N_BANDS))
        self.decoders = nn.ModuleList(
            _stack(config.code_dim, config.hidden, c, config.downsample, up=True)
            for _ in range(N_BANDS))
        self.quantizer = VectorQuantizer(N_BANDS, config.codebook_size, config.code_dim,
                                         ema=config.quantizer == "ema", decay=config.ema_decay,
                                         dead_threshold=config.dead_code_threshold,
                                         commitment=config.commitment)
        # buffers are saved with the weights: transformers leaves unsaved buffers
        # uninitialised when it loads a checkpoint
        self.register_buffer("band_mean", torch.tensor(config.band_mean).view(1, 4, 1, 1, 1))
        self.register_buffer("band_std", torch.tensor(config.band_std).view(1, 4, 1, 1, 1))
        self.post_init()

    def _init_weights(self, module):
        """PyTorch's default initialisation (the conv nets are not transformers)."""

    # -- tensors ------------------------------------------------------------------------------
    def _pixels(self, images) -> torch.Tensor:
        """uint8 (N, H, W[, C]) -> float (N, C, H, W) in [0, 1]."""
        a = torch.from_numpy(np.array(images, copy=True))
        h, w, c = self.config.image_shape
        if a.ndim == 3 and c == 1:
            a = a[..., None]
        if a.ndim != 4 or tuple(a.shape[1:]) != (h, w, c):
            raise ValueError(f"the tokenizer takes images of shape (N, {h}, {w}"
                             + (f", {c})" if c > 1 else ")") + f", not {tuple(a.shape)}")
        return a.permute(0, 3, 1, 2).float().div(255.0)

    def bands(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised bands (B, 4, C, H/2, W/2) of images (B, C, H, W) in [0, 1]."""
        return (self.dwt(x) - self.band_mean) / self.band_std

    def unbands(self, bands: torch.Tensor) -> torch.Tensor:
        return self.dwt.inverse(bands * self.band_std + self.band_mean)

    def _encode_z(self, bands: torch.Tensor) -> torch.Tensor:
        # (B, 4, C, H/2, W/2) -> (B, 4, D, h, w)
        return torch.stack([enc(bands[:, i]) for i, enc in enumerate(self.encoders)], 1)

    def _decode_q(self, q: torch.Tensor) -> torch.Tensor:
        # (B, 4, D, h, w) -> (B, 4, C, H/2, W/2)
        return torch.stack([dec(q[:, i]) for i, dec in enumerate(self.decoders)], 1)

    def forward(self, pixel_values: torch.Tensor) -> dict:
        """Losses of a batch of images (B, C, H, W) in [0, 1]."""
        bands = self.bands(pixel_values)                                      # (B, 4, C, h, w)
        q, idx, vq_loss, restarted = self.quantizer(self._encode_z(bands))
        rec = self._decode_q(q)
        band_l1 = (rec - bands).abs().mean(dim=(0, 2, 3, 4))                  # (4,)
        image = self.unbands(rec)
        image_loss = F.mse_loss(image, pixel_values) / self.config.pixel_std ** 2
        loss = band_l1.sum() + self.config.image_loss_weight * image_loss + vq_loss
        return {"loss": loss, "band_l1": band_l1.detach(), "image_loss": image_loss.detach(),
                "vq_loss": vq_loss.detach(), "codes": idx, "restarted": restarted,
                "reconstruction": image.detach()}

    # -- images <-> codes ---------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, images, batch_size: int = 512) -> np.ndarray:
        """Codes (N, 4, h, w) int64 of uint8 images (N, H, W[, C])."""
        x_all = self._pixels(images)
        dev = self.band_std.device
        out = []
        for s in range(0, len(x_all), batch_size):
            z = self._encode_z(self.bands(x_all[s:s + batch_size].to(dev)))
            b, g, d, h, w = z.shape
            flat = z.permute(1, 0, 3, 4, 2).reshape(g, b * h * w, d)
            idx = self.quantizer.nearest(flat).reshape(g, b, h, w).transpose(0, 1)
            out.append(idx.cpu())
        if not out:
            return np.zeros((0,) + self.config.code_shape, np.int64)
        return torch.cat(out).numpy()

    @torch.no_grad()
    def decode(self, codes, batch_size: int = 512) -> np.ndarray:
        """uint8 images (N, H, W[, C]) of codes (N, 4, h, w)."""
        codes = torch.as_tensor(np.asarray(codes), dtype=torch.long)
        shape = self.config.code_shape
        if codes.ndim != 4 or tuple(codes.shape[1:]) != shape:
            raise ValueError(f"codes must have shape (N, {', '.join(map(str, shape))}), "
                             f"not {tuple(codes.shape)}")
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.config.codebook_size):
            raise ValueError(f"codes must be in 0..{self.config.codebook_size - 1}")
        dev = self.band_std.device
        out = []
        for s in range(0, len(codes), batch_size):
            c = codes[s:s + batch_size].to(dev)
            b, g, h, w = c.shape
            q = self.quantizer.lookup(c.transpose(0, 1).reshape(g, -1))       # (G, N, D)
            q = q.reshape(g, b, h, w, -1).permute(1, 0, 4, 2, 3)              # (B, G, D, h, w)
            out.append(self.unbands(self._decode_q(q)).cpu())
        h, w, c = self.config.image_shape
        if not out:
            return np.zeros((0, h, w) + ((c,) if c > 1 else ()), np.uint8)
        x = torch.cat(out).clamp(0, 1).mul(255).round().to(torch.uint8)       # (N, C, H, W)
        x = x.permute(0, 2, 3, 1).numpy()
        return x[..., 0] if c == 1 else x


AutoConfig.register("bandvq", BandVQConfig)
AutoModel.register(BandVQConfig, BandVQModel)
