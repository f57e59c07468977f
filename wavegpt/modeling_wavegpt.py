"""WaveGPT: GPT-2 over wavelet-language streams, with wavelet-position (slot) embeddings.

Sequence layout for one image with tokens ``x_0 .. x_{n-1}`` and slots ``s_0 .. s_{n-1}``::

    position      0          1        ...   n-1
    input id      <class c>  x_0      ...   x_{n-2}
    own slot      <start>    s_0      ...   s_{n-2}
    next slot     s_0        s_1      ...   s_{n-1}      (only with use_next_slot)
    label         x_0        x_1      ...   x_{n-1}

Every position also gets the embedding of the image's exponent ``e``.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from transformers import AutoConfig, AutoModelForCausalLM, GPT2LMHeadModel

from wavecode.context import N_CONTEXTS

from .configuration_wavegpt import WaveGPTConfig

__all__ = ["WaveGPTForCausalLM", "SlotEmbedding"]

SLOT_COLUMNS = 7  # plane, row, col, level, orientation, channel, kind


class SlotEmbedding(nn.Module):
    """Sum of learned embeddings of a slot's fields; slot rows of -1 (start / none) map to a
    learned 'start' vector."""

    def __init__(self, config: WaveGPTConfig):
        super().__init__()
        d = config.n_embd
        sizes = [config.max_planes, config.max_side, config.max_side, config.max_levels + 1, 4,
                 3, 4]
        self.sizes = sizes
        self.tables = nn.ModuleList(nn.Embedding(n, d) for n in sizes)
        self.start = nn.Parameter(torch.zeros(d))

    def _index(self, device):
        # per-field offsets into the concatenated tables and the largest index of each field;
        # plain attributes, not buffers, so checkpoints keep their keys
        if getattr(self, "_cached", None) is None or self._cached[0].device != device:
            top = torch.tensor([n - 1 for n in self.sizes], device=device)
            off = torch.tensor([0] + self.sizes[:-1], device=device).cumsum(0)
            self._cached = (top, off)
        return self._cached

    def forward(self, slots: torch.Tensor) -> torch.Tensor:  # (B, T, 7) -> (B, T, C)
        none = slots[..., 0] < 0                                   # (B, T)
        top, off = self._index(slots.device)
        idx = torch.minimum(slots.clamp(min=0), top) + off         # (B, T, 7)
        weight = torch.cat([t.weight for t in self.tables])        # (sum of sizes, C)
        # one bag of 7 rows per position, summed in field order: one op instead of 28
        out = F.embedding_bag(idx.reshape(-1, SLOT_COLUMNS), weight, mode="sum")
        out = out.view(*slots.shape[:-1], -1)                      # (B, T, C)
        return torch.where(none[..., None], self.start.expand_as(out), out)


class NoPositions(nn.Module):
    """Stands in for GPT-2's absolute position table when the slots carry position."""

    def __init__(self, n_embd: int):
        super().__init__()
        self.n_embd = n_embd

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, T, C)
        return torch.zeros(position_ids.shape + (self.n_embd,), device=position_ids.device)


class WaveGPTForCausalLM(GPT2LMHeadModel):
    """GPT-2 LM head model whose inputs are built from tokens, slots, exponent and class."""

    config_class = WaveGPTConfig

    def __init__(self, config: WaveGPTConfig):
        super().__init__(config)
        self.slot_emb = SlotEmbedding(config)
        self.next_slot_emb = SlotEmbedding(config) if config.use_next_slot else None
        self.exp_emb = nn.Embedding(config.exponent_max - config.exponent_min + 1, config.n_embd)
        self.ctx_emb = nn.Embedding(N_CONTEXTS, config.n_embd) if config.use_context else None
        if not config.use_abs_pos:
            self.transformer.wpe = NoPositions(config.n_embd)   # GPT-2 always adds wpe
        self.post_init()

    def embed(self, input_ids, slots, next_slots, exponents, next_contexts=None):
        """Input embeddings. input_ids (B, T), slots / next_slots (B, T, 7), exponents (B,),
        next_contexts (B, T) (only with ``use_context``)."""
        cfg = self.config
        x = self.transformer.wte(input_ids)                                  # (B, T, C)
        x = x + self.slot_emb(slots)
        if self.next_slot_emb is not None:
            if next_slots is None:
                raise ValueError("this model embeds the next slot: pass next_slots")
            x = x + self.next_slot_emb(next_slots)
        if self.ctx_emb is not None:
            if next_contexts is None:
                raise ValueError("this model embeds the coding context: pass next_contexts")
            x = x + self.ctx_emb(next_contexts.clamp(0, N_CONTEXTS - 1))
        e = (exponents.clamp(cfg.exponent_min, cfg.exponent_max) - cfg.exponent_min).long()
        return x + self.exp_emb(e)[:, None, :]                               # (B, T, C)

    def forward(self, input_ids=None, slots=None, next_slots=None, exponents=None, labels=None,
                next_contexts=None,
                legal_mask=None, attention_mask=None, past_key_values=None, position_ids=None,
                use_cache=None, inputs_embeds=None, **kwargs):
        """As GPT-2's, with the wavelet inputs. ``labels`` (B, T) with -100 at padding;
        ``legal_mask`` (B, T, K) bool restricts the softmax to the legal next tokens (the
        grammar), in the loss and in the returned logits."""
        if inputs_embeds is None:
            if input_ids is None or slots is None or exponents is None:
                raise ValueError("pass input_ids, slots and exponents (or inputs_embeds)")
            inputs_embeds = self.embed(input_ids, slots, next_slots, exponents, next_contexts)
        out = super().forward(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                              past_key_values=past_key_values, position_ids=position_ids,
                              use_cache=use_cache, **kwargs)
        n_tok = self.config.n_tokens
        logits = out.logits[..., :n_tok]                                     # (B, T, K)
        if legal_mask is not None:
            logits = logits.masked_fill(~legal_mask, float("-inf"))
        out.logits = logits
        out.loss = None
        if labels is not None:
            out.loss = nn.functional.cross_entropy(logits.reshape(-1, n_tok).float(),
                                                   labels.reshape(-1), ignore_index=-100)
        return out

    def prepare_inputs_for_generation(self, input_ids, grammar=None, exponents=None, **kwargs):
        """For HF ``generate()``: with ``grammar`` (a :class:`~wavegpt.hf_generate.GrammarTracker`)
        the slots of each new position come from the grammar state, which consumes the token
        sampled last. See :func:`wavegpt.hf_generate.generate_hf`."""
        inputs = super().prepare_inputs_for_generation(input_ids, **kwargs)
        if grammar is None:
            return inputs
        grammar.sync(input_ids)
        ids = inputs["input_ids"]                                           # (B, S)
        if ids.shape[1] != 1:
            raise ValueError("generate() with a grammar starts from the class token alone")
        b = ids.shape[0]
        own = (torch.from_numpy(grammar.own.astype("int64")) if grammar.seen
               else torch.full((b, 7), -1, dtype=torch.long))
        inputs.update(slots=own[:, None],
                      next_slots=torch.from_numpy(grammar.state.next_slots().astype("int64"))[:, None],
                      exponents=exponents)
        if self.config.use_context:
            inputs["next_contexts"] = torch.from_numpy(
                grammar.state.next_contexts().astype("int64"))[:, None]
        return inputs


AutoConfig.register("wavegpt", WaveGPTConfig)
AutoModelForCausalLM.register(WaveGPTConfig, WaveGPTForCausalLM)
