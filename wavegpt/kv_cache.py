"""Incremental decoding of a WaveGPT with a static, preallocated key/value cache.

HF's ``DynamicCache`` concatenates keys and values at every step, so a step costs more the longer
the stream (O(T^2) copying over a sampled stream) and its Python bookkeeping dominates at these
model sizes. Here every layer gets ``(B, H, T_max, D)`` key and value buffers once; a step writes
one column and attends over the filled prefix. The same weights as the HF model, so a prefill
followed by steps gives the full forward's logits (tested).

Rows may start at different lengths (rewinding streams of different lengths): prefixes are
left-aligned to a common end, and a key-validity mask hides the padding. Positions are counted
per row, so models with GPT-2's absolute position table work too.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

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
    """

    def __init__(self, model, batch_size: int, max_len: int):
        cfg = model.config
        if cfg.scale_attn_by_inverse_layer_idx or cfg.reorder_and_upcast_attn or \
                not cfg.scale_attn_weights or cfg.add_cross_attention:
            raise ValueError("the static cache implements GPT-2's default attention only")
        self.model = model
        self.blocks = model.transformer.h
        self.n_head = cfg.n_head
        self.head_dim = cfg.n_embd // cfg.n_head
        p = next(model.parameters())
        shape = (len(self.blocks), batch_size, cfg.n_head, max_len, self.head_dim)
        self.k = torch.zeros(shape, dtype=p.dtype, device=p.device)
        self.v = torch.zeros(shape, dtype=p.dtype, device=p.device)
        self.valid = torch.zeros(batch_size, max_len, dtype=torch.bool, device=p.device)
        self.pos = torch.zeros(batch_size, dtype=torch.long, device=p.device)  # per-row position
        self.t = 0                      # columns filled
        self.max_len = max_len
        self.padded = False             # some key is padding: masks needed

    @torch.no_grad()
    def forward(self, embeds: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, S, K) of ``S`` new positions given their input embeddings (B, S, C).

        ``valid`` (B, S) bool marks real positions (False: left padding, never attended to).
        """
        if self.model.training:
            raise ValueError("the static cache is for inference: call model.eval() first")
        b, s, c = embeds.shape
        t0, t1 = self.t, self.t + s
        if t1 > self.max_len:
            raise ValueError(f"the cache holds {self.max_len} positions; {t1} requested")
        if valid is None:
            valid = torch.ones(b, s, dtype=torch.bool, device=embeds.device)
        self.valid[:, t0:t1] = valid
        self.padded = self.padded or not bool(valid.all())
        x = embeds
        if self.model.config.use_abs_pos:
            pos = self.pos[:, None] + valid.long().cumsum(1) - 1                 # (B, S)
            x = x + self.model.transformer.wpe.weight[pos.clamp(min=0)]
        self.pos += valid.long().sum(1)
        mask = None
        if self.padded or s > 1:
            causal = torch.ones(s, t1, dtype=torch.bool, device=x.device).tril(t0)  # (S, T1)
            mask = causal[None] & self.valid[:, None, :t1]                         # (B, S, T1)
            # a padding query attends to itself only: a row with no key at all would give NaN
            eye = torch.zeros(s, t1, dtype=torch.bool, device=x.device)
            eye[:, t0:t1] = torch.eye(s, dtype=torch.bool, device=x.device)
            mask = (mask | eye[None])[:, None]                                     # (B, 1, S, T1)
        with attention_kernels(x.device):
            x = self._blocks(x, mask, t0, t1)
        self.t = t1
        x = self.model.transformer.ln_f(x)
        return self.model.lm_head(x)[..., :self.model.config.n_tokens]   # (B, S, K)

    def _blocks(self, x, mask, t0: int, t1: int) -> torch.Tensor:
        b, s, c = x.shape
        for layer, block in enumerate(self.blocks):
            # GPT-2's block with the modules' own ops called directly (same results): at a few
            # rows per step, module dispatch costs as much as the arithmetic
            h = _ln(block.ln_1, x)
            q, k, v = _conv1d(block.attn.c_attn, h).split(c, dim=2)               # (B, S, C)
            q = q.view(b, s, self.n_head, self.head_dim).transpose(1, 2)           # (B, H, S, D)
            self.k[layer, :, :, t0:t1] = k.view(b, s, self.n_head, self.head_dim).transpose(1, 2)
            self.v[layer, :, :, t0:t1] = v.view(b, s, self.n_head, self.head_dim).transpose(1, 2)
            o = F.scaled_dot_product_attention(q, self.k[layer, :, :, :t1],
                                               self.v[layer, :, :, :t1], attn_mask=mask)
            x = x + _conv1d(block.attn.c_proj, o.transpose(1, 2).reshape(b, s, c))  # (B, S, C)
            mlp = block.mlp
            x = x + _conv1d(mlp.c_proj, mlp.act(_conv1d(mlp.c_fc, _ln(block.ln_2, x))))
        return x
