"""Incremental decoding of a WaveGPT with a static, preallocated key/value cache.

HF's ``DynamicCache`` concatenates keys and values at every step, so a step costs more the longer
the stream (O(T^2) copying over a sampled stream) and its Python bookkeeping dominates at these
model sizes. Here every layer gets ``(B, H, T_max, D)`` key and value buffers once; a step writes
one column and attends over the filled prefix. The same weights as the HF model, so a prefill
followed by steps gives the full forward's logits (tested).

On the CPU (float32) keys and values are stored transposed, ``(B, H, D, T_max)``, and a
one-position step attends with a fused numba kernel (:mod:`wavegpt._attention`): torch's CPU
SDPA reads the cache of a 64-row batch at a fraction of the memory bandwidth. Prefills (several
positions) and other devices use ``scaled_dot_product_attention``.

``cache="int16"`` (CPU, fused) stores each key and value vector as int16 with its own scale (its
largest magnitude / 32767): half the bytes to read per step, at a relative error of ~1e-5 of the
vector's largest entry -- far below float16's 5e-4 -- so the logits move by ~1e-5 (tested).
``cache="int8"`` (/ 127) quarters the bytes; the logits move by ~1e-3.

Rows may start at different lengths (rewinding streams of different lengths): prefixes are
left-aligned to a common end, and a key-validity mask hides the padding. Positions are counted
per row, so models with GPT-2's absolute position table work too.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from ._attention import _attend_last, _attend_last_q
from .device import attention_kernels

__all__ = ["StaticKVDecoder"]


def _ln(norm, x):
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


def _conv1d(conv, x):
    # transformers' Conv1D: x @ W + b with W stored (in, out)
    y = torch.addmm(conv.bias, x.reshape(-1, x.shape[-1]), conv.weight)
    return y.view(*x.shape[:-1], conv.weight.shape[1])


class StaticKVDecoder:
    """Forward a :class:`WaveGPTForCausalLM` a few positions at a time over a static cache.

    Parameters
    ----------
    model : WaveGPTForCausalLM
    batch_size : int
        Rows (streams; with classifier-free guidance, twice the streams).
    max_len : int
        Positions to reserve per row (class token + tokens).
    fused : bool, optional
        Single steps through the fused CPU kernel; default: when the model is float32 on the
        CPU (``False`` gives the SDPA path everywhere, e.g. to compare the two).
    cache : {"float32", "int16", "int8"}, optional
        How keys and values are stored: as computed, or (fused path only) as int16 or int8 with
        one float32 scale per vector -- half or a quarter of a step's attention reads.
    """

    # storage dtype and the largest integer of each quantised cache
    CACHES = {"float32": None, "int16": (torch.int16, 32767.0), "int8": (torch.int8, 127.0)}

    def __init__(self, model, batch_size: int, max_len: int, fused: bool | None = None,
                 cache: str = "float32"):
        cfg = model.config
        if cfg.scale_attn_by_inverse_layer_idx or cfg.reorder_and_upcast_attn or \
                not cfg.scale_attn_weights or cfg.add_cross_attention:
            raise ValueError("the static cache implements GPT-2's default attention only")
        self.model = model
        self.blocks = model.transformer.h
        self.n_head = cfg.n_head
        self.head_dim = cfg.n_embd // cfg.n_head
        p = next(model.parameters())
        # transposed keys and values for the fused CPU kernel: (L, B, H, D, T) instead of
        # (L, B, H, T, D)
        can_fuse = p.device.type == "cpu" and p.dtype == torch.float32
        if fused and not can_fuse:
            raise ValueError(f"the fused kernel needs a float32 model on the CPU, not "
                             f"{p.dtype} on {p.device}")
        self.fused = can_fuse if fused is None else bool(fused)
        if cache not in self.CACHES:
            raise ValueError(f"cache must be one of {', '.join(self.CACHES)}, not {cache!r}")
        if self.CACHES[cache] and not self.fused:
            raise ValueError(f"the {cache} cache needs the fused kernel: a float32 model on the "
                             "CPU")
        self.quantized = self.CACHES[cache] is not None
        shape = (len(self.blocks), batch_size, cfg.n_head, max_len, self.head_dim)
        if self.fused:
            shape = shape[:3] + (self.head_dim, max_len)
        dtype, qmax = self.CACHES[cache] or (p.dtype, None)
        self._qmax = None if qmax is None else np.float32(qmax)
        self.k = torch.zeros(shape, dtype=dtype, device=p.device)
        self.v = torch.zeros(shape, dtype=dtype, device=p.device)
        if self.quantized:                  # one scale per (layer, row, head, position)
            self.k_scale = torch.zeros(shape[:3] + (max_len,), dtype=p.dtype)
            self.v_scale = torch.zeros_like(self.k_scale)
            self._ks_np, self._vs_np = self.k_scale.numpy(), self.v_scale.numpy()
        self.valid = torch.zeros(batch_size, max_len, dtype=torch.bool, device=p.device)
        if self.fused:
            self._k_np, self._v_np, self._valid_np = (self.k.numpy(), self.v.numpy(),
                                                      self.valid.numpy())
        self.pos = torch.zeros(batch_size, dtype=torch.long, device=p.device)  # per-row position
        self.t = 0                      # columns filled
        self.max_len = max_len
        self.padded = False             # some key is padding: masks needed
        # the activation as an in-place aten op, where it is one (GPT-2's two GELUs)
        self._gelu = {"gelu_pytorch_tanh": "tanh", "gelu": "none"}.get(cfg.activation_function)
        self._o = self._hidden = None
        # each block's parameters, looked up once (module attribute access costs per step)
        self._params = [((blk.ln_1.weight, blk.ln_1.bias, blk.ln_1.eps),
                         (blk.attn.c_attn.bias, blk.attn.c_attn.weight),
                         (blk.attn.c_proj.bias, blk.attn.c_proj.weight),
                         (blk.ln_2.weight, blk.ln_2.bias, blk.ln_2.eps),
                         (blk.mlp.c_fc.bias, blk.mlp.c_fc.weight),
                         (blk.mlp.c_proj.bias, blk.mlp.c_proj.weight), blk.mlp.act)
                        for blk in self.blocks]

    @torch.no_grad()
    def forward(self, embeds: torch.Tensor, valid: torch.Tensor | None = None,
                rows: np.ndarray | None = None) -> torch.Tensor:
        """Logits (B, S, K) of ``S`` new positions given their input embeddings (B, S, C).

        ``valid`` (B, S) bool marks real positions (False: left padding, never attended to).
        ``rows`` (fused single steps only): the cache rows that ``embeds`` (N, 1, C) continue,
        in order -- the streams still running; the other rows are left as they are (their
        streams are over) and the logits are (N, 1, K).
        """
        if self.model.training:
            raise ValueError("the static cache is for inference: call model.eval() first")
        b, s, c = embeds.shape
        if rows is not None:
            if not (self.fused and s == 1 and valid is None):
                raise ValueError("rows: only for single steps of the fused CPU path")
            rows = np.ascontiguousarray(rows, np.int64)
            if rows.shape != (b,) or (b and (rows.min() < 0 or rows.max() >= len(self.pos))):
                raise ValueError(f"rows must be {b} cache rows in 0..{len(self.pos) - 1}")
        t0, t1 = self.t, self.t + s
        if t1 > self.max_len:
            raise ValueError(f"the cache holds {self.max_len} positions; {t1} requested")
        if valid is None:                  # all real: no mask to copy or test
            self.valid[:, t0:t1] = True
            all_valid = True
        else:
            self.valid[:, t0:t1] = valid
            all_valid = bool(valid.all())
        self.padded = self.padded or not all_valid
        x = embeds
        # the rows this call continues (all of them unless ``rows``): positions counted per row
        live = slice(None) if rows is None else torch.from_numpy(rows)
        if self.model.config.use_abs_pos:
            counted = (valid.long().cumsum(1) if valid is not None else
                       torch.arange(1, s + 1, device=x.device).expand(b, s))
            pos = self.pos[live][:, None] + counted - 1                            # (B, S)
            x = x + self.model.transformer.wpe.weight[pos.clamp(min=0)]
        self.pos[live] += valid.long().sum(1) if valid is not None else s
        # the fused kernel: one new position whose own key is valid (it is never alone then)
        fused = self.fused and s == 1 and all_valid
        mask = None
        if not fused and (self.padded or s > 1):
            causal = torch.ones(s, t1, dtype=torch.bool, device=x.device).tril(t0)  # (S, T1)
            mask = causal[None] & self.valid[:, None, :t1]                         # (B, S, T1)
            # a padding query attends to itself only: a row with no key at all would give NaN
            eye = torch.zeros(s, t1, dtype=torch.bool, device=x.device)
            eye[:, t0:t1] = torch.eye(s, dtype=torch.bool, device=x.device)
            mask = (mask | eye[None])[:, None]                                     # (B, 1, S, T1)
        if fused:
            x = self._step_fused(x, t1, np.arange(b) if rows is None else rows)
        else:
            with attention_kernels(x.device):
                x = self._blocks(x, mask, t0, t1)
        self.t = t1
        x = self.model.transformer.ln_f(x)
        return self.model.lm_head(x)[..., :self.model.config.n_tokens]   # (B, S, K)

    def _step_fused(self, x, t1: int, rows: np.ndarray) -> torch.Tensor:
        """One position of the cache rows ``rows`` through every block, attention by the fused
        kernel (which also stores the position's key and value): GPT-2's block, the same ops
        called directly."""
        b, _, c = x.shape
        x = x.view(b, c)                                                           # (B, C)
        if self._o is None:
            full = len(self.pos)        # sized for every row; fewer rows use the first ones
            self._o = torch.empty(full, self.n_head, self.head_dim, dtype=x.dtype)  # (B, H, D)
            # the hidden layer in a buffer kept across steps, the activation in place: a fresh
            # (64, 512) float32 tensor is 128 KiB, glibc's mmap threshold, and its page faults
            # cost more than the arithmetic
            self._hidden = torch.empty(full, self.blocks[0].mlp.c_fc.weight.shape[1],
                                       dtype=x.dtype)                              # (B, 4C)
        o, o_np = self._o[:b].view(b, c), self._o[:b].numpy()
        hidden = self._hidden[:b]
        scale = np.float32(self.head_dim ** -0.5)
        for layer, (ln_1, attn, proj, ln_2, fc, out, act) in enumerate(self._params):
            # Conv1D: x @ W + b, W stored (in, out)
            qkv = torch.addmm(attn[0], F.layer_norm(x, (c,), *ln_1), attn[1])        # (B, 3C)
            if self.quantized:
                _attend_last_q(qkv.numpy(), self._k_np[layer], self._v_np[layer],
                               self._ks_np[layer], self._vs_np[layer], self._valid_np, t1,
                               scale, o_np, self._qmax, rows)
            else:
                _attend_last(qkv.numpy(), self._k_np[layer], self._v_np[layer],
                             self._valid_np, t1, scale, o_np, rows)
            x = torch.addmm(proj[0], o, proj[1]).add_(x)
            hid = torch.addmm(fc[0], F.layer_norm(x, (c,), *ln_2), fc[1],
                              out=hidden)                                          # (B, 4C)
            hid = torch.ops.aten.gelu_(hid, approximate=self._gelu) if self._gelu else act(hid)
            x = torch.addmm(out[0], hid, out[1]).add_(x)
        return x.view(b, 1, c)

    def _blocks(self, x, mask, t0: int, t1: int) -> torch.Tensor:
        b, s, c = x.shape
        nh, hd = self.n_head, self.head_dim
        for layer, block in enumerate(self.blocks):
            # GPT-2's block with the modules' own ops called directly (same results): at a few
            # rows per step, module dispatch costs as much as the arithmetic
            h = _ln(block.ln_1, x)
            q, k, v = _conv1d(block.attn.c_attn, h).split(c, dim=2)               # (B, S, C)
            q = q.view(b, s, nh, hd).transpose(1, 2)                               # (B, H, S, D)
            k = k.view(b, s, nh, hd).transpose(1, 2)
            v = v.view(b, s, nh, hd).transpose(1, 2)
            if self.quantized:                                 # int16 / int8 (L, B, H, D, T)
                keys = self._store_q(self.k, self.k_scale, layer, k, t0, t1)
                values = self._store_q(self.v, self.v_scale, layer, v, t0, t1)
            elif self.fused:                                   # cache (L, B, H, D, T)
                self.k[layer, :, :, :, t0:t1] = k.transpose(2, 3)
                self.v[layer, :, :, :, t0:t1] = v.transpose(2, 3)
                keys = self.k[layer, ..., :t1].transpose(2, 3)                     # (B, H, T, D)
                values = self.v[layer, ..., :t1].transpose(2, 3)
            else:                                              # cache (L, B, H, T, D)
                self.k[layer, :, :, t0:t1] = k
                self.v[layer, :, :, t0:t1] = v
                keys, values = self.k[layer, :, :, :t1], self.v[layer, :, :, :t1]
            a = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
            x = x + _conv1d(block.attn.c_proj, a.transpose(1, 2).reshape(b, s, c))
            mlp = block.mlp
            x = x + _conv1d(mlp.c_proj, mlp.act(_conv1d(mlp.c_fc, _ln(block.ln_2, x))))
        return x

    def _store_q(self, cache, scales, layer: int, x, t0: int, t1: int) -> torch.Tensor:
        """Store ``x`` (B, H, S, D) at columns ``t0:t1`` of an integer cache as the fused kernel
        does (:func:`wavegpt._attention._quantize`); returns the dequantised cache
        (B, H, t1, D) to attend over."""
        amax = x.abs().amax(-1)                                                    # (B, H, S)
        qmax = self._qmax
        inv = torch.where(amax > 0, qmax / amax, torch.zeros_like(amax))
        cache[layer, ..., t0:t1] = torch.round(x * inv[..., None]).to(cache.dtype).transpose(2, 3)
        scales[layer, ..., t0:t1] = amax / qmax
        return (cache[layer, ..., :t1].float() * scales[layer, :, :, None, :t1]).transpose(2, 3)
