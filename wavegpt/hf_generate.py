"""Sampling through HF ``generate()``: the comparison baseline of ``benchmarks/sampling_speed.py``.

The grammar state rides along as a model keyword (``grammar=GrammarTracker(...)``): the model's
``prepare_inputs_for_generation`` feeds it each sampled token and takes the slots from it, a
``LogitsProcessor`` masks illegal tokens (then top-k), and a ``StoppingCriteria`` ends a stream
when the grammar says it is complete. The same model and masking as :func:`wavegpt.sample.sample`,
but HF's loop and its ``DynamicCache``.
"""
from __future__ import annotations

import numpy as np
import torch
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, \
    StoppingCriteriaList

from wavecode import TokenBatch, WaveletTokenizer

from .sample import stream_limit

__all__ = ["GrammarTracker", "GrammarLogitsProcessor", "GrammarStoppingCriteria", "generate_hf"]


class GrammarTracker:
    """A grammar state kept in step with ``generate()``'s ``input_ids`` (class token first)."""

    def __init__(self, state):
        self.state = state
        self.seen = 0               # tokens consumed
        self.own = None             # slot of the last consumed token, (B, 7)
        self.streams = [[] for _ in range(state.batch_size)]

    def sync(self, input_ids: torch.Tensor) -> None:
        ids = input_ids.cpu().numpy()
        while self.seen < ids.shape[1] - 1:
            self.own = self.state.next_slots()
            toks = np.where(self.state.done, -1, ids[:, 1 + self.seen])
            self.state.step(toks)
            for i in np.flatnonzero(toks >= 0):
                self.streams[i].append(int(toks[i]))
            self.seen += 1


class GrammarLogitsProcessor(LogitsProcessor):
    """Illegal tokens to -inf (a finished stream may only repeat token 0, ignored), then
    top-k, as :func:`wavegpt.sample.sample` does."""

    def __init__(self, tracker: GrammarTracker, top_k: int | None = None):
        self.tracker = tracker
        self.top_k = top_k

    def __call__(self, input_ids, scores):
        self.tracker.sync(input_ids)
        mask = torch.from_numpy(self.tracker.state.legal_mask())                 # (B, 7)
        mask[torch.from_numpy(self.tracker.state.done), 0] = True
        scores = scores.masked_fill(~mask, float("-inf"))
        if self.top_k:
            kth = torch.topk(scores, self.top_k, dim=-1).values[..., -1:]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        return scores


class GrammarStoppingCriteria(StoppingCriteria):
    def __init__(self, tracker: GrammarTracker):
        self.tracker = tracker

    def __call__(self, input_ids, scores, **kwargs):
        self.tracker.sync(input_ids)
        return torch.from_numpy(self.tracker.state.done.copy())


@torch.no_grad()
def generate_hf(model, classes, exponents, top_k: int | None = None, seed: int = 0,
                max_tokens: int | None = None):
    """Sample with ``model.generate()``; returns ``(TokenBatch, images)`` like ``sample``."""
    tok = WaveletTokenizer.from_meta(model.config.tokenizer)
    classes = np.asarray(classes, np.int64)
    exponents = np.asarray(exponents, np.int64)
    tracker = GrammarTracker(tok.start(len(classes), exponents))
    bound = stream_limit(model.config, tok, exponents, max_tokens)   # as the sampler's
    ids = torch.tensor([[model.config.class_token(c)] for c in classes])
    torch.manual_seed(seed)
    model.eval()
    out = model.generate(ids, grammar=tracker, exponents=torch.from_numpy(exponents),
                   attention_mask=torch.ones_like(ids), do_sample=True, top_k=None, top_p=None,
                   temperature=None, max_new_tokens=bound, eos_token_id=None, pad_token_id=0,
                   logits_processor=LogitsProcessorList([GrammarLogitsProcessor(tracker, top_k)]),
                   stopping_criteria=StoppingCriteriaList([GrammarStoppingCriteria(tracker)]))
    tracker.sync(out)
    lengths = np.array([len(x) for x in tracker.streams])
    flat = np.array([t for x in tracker.streams for t in x], np.uint8)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    batch = TokenBatch(flat, offsets, exponents.astype(np.int32), meta=tok.meta)
    return batch, tok.decode(batch)
