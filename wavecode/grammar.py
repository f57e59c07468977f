"""The wavelet language one token at a time: a batch decoder state for sampling.

>>> st = tok.start(64, exponents)          # 64 streams with their T0 exponents
>>> mask = st.legal_mask()                 # (64, 7) bool: the exact set of legal next tokens
>>> slots = st.next_slots()                # (64, 7) int16: where the next token goes
>>> st.step(next_tokens)                   # (64,) ints; -1 leaves a stream untouched
>>> images = st.decode()                   # the image of every prefix so far

A token is *legal* when some coefficient array's encoding produces it at this point.
"""
from __future__ import annotations

import numpy as np

from . import _scan
from .tokenizer import TOKEN_NAMES

__all__ = ["GrammarState"]


class GrammarState:
    """Batch decoder state; see the module docstring. Made by :meth:`WaveletTokenizer.start`."""

    def __init__(self, tokenizer, batch_size: int, exponents):
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, not {batch_size}")
        b = int(batch_size)
        e = np.asarray(exponents, np.int64).reshape(-1)
        if e.size == 1 and b > 1:
            e = np.repeat(e, b)
        if e.shape != (b,):
            raise ValueError(f"need {b} exponents, got {e.size}")
        tokenizer._check_exponents(e)
        self.tokenizer = tokenizer
        lay = tokenizer.layout
        n = lay.size
        self._lay = tokenizer._lay
        self.exponents = e.astype(np.int32)
        self._cur = np.empty((b, _scan.CURSOR_FIELDS), np.int64)
        self._sig = np.empty((b, n), np.uint8)
        self._bsig = np.empty((b, max(lay.n_blocks, 1)), np.int32)
        self._qsig = np.empty((b, max(lay.n_quads, 1)), np.int32)
        self._approx = np.empty((b, n), np.float64)
        self._mask = np.empty((b, 7), np.bool_)
        self._slots = np.empty((b, 7), np.int16)
        _scan._state_start(self._cur, self._sig, self._bsig, self._qsig, self._approx,
                           e, tokenizer.config.final_exponent, self._lay)

    @property
    def batch_size(self) -> int:
        return self._cur.shape[0]

    @property
    def done(self) -> np.ndarray:
        """(B,) bool: the stream is complete (nothing may follow)."""
        return self._cur[:, _scan._K] == _scan.K_DONE

    @property
    def lengths(self) -> np.ndarray:
        """(B,) tokens consumed so far."""
        return self._cur[:, _scan._N].copy()

    def step(self, tokens) -> None:
        """Consume one token per stream (``-1``: skip that stream).

        Raises ``ValueError`` naming the stream and position of an illegal token; then no stream
        has changed.
        """
        t = np.asarray(tokens)
        if t.shape != (self.batch_size,):
            raise ValueError(f"step needs {self.batch_size} tokens, got shape {t.shape}")
        if not np.issubdtype(t.dtype, np.integer):
            raise ValueError(f"tokens must be integers, not {t.dtype}")
        t = t.astype(np.int64)
        bad = _scan._state_step(self._cur, self._sig, self._bsig, self._qsig, self._approx, t,
                                self._lay)
        if bad >= 0:
            tok = int(t[bad])
            name = TOKEN_NAMES[tok] if 0 <= tok < 7 else f"id {tok}"
            if self.done[bad]:
                why = "the stream is complete"
            else:
                m = self.legal_mask()[bad]
                why = "legal here: " + ", ".join(TOKEN_NAMES[i] for i in np.flatnonzero(m))
            raise ValueError(f"illegal token {name} for stream {bad} at position "
                             f"{int(self._cur[bad, _scan._N])} ({why})")

    def legal_mask(self) -> np.ndarray:
        """(B, 7) bool: legal next tokens (all False for a complete stream)."""
        _scan._state_mask(self._cur, self._mask, self._lay)
        return self._mask.copy()

    def next_slots(self) -> np.ndarray:
        """(B, 7) int16 slot of the next token (columns ``SLOT_FIELDS``; -1 when done)."""
        _scan._state_slots(self._cur, self._slots, self._lay)
        return self._slots.copy()

    def next_contexts(self) -> np.ndarray:
        """(B,) uint8 coding context of the next decision (:mod:`wavecode.context`; 0 when
        done)."""
        from .context import _state_contexts
        out = np.empty(self.batch_size, np.uint8)
        nbr, parent, ori = self.tokenizer.context_tables
        _state_contexts(self._cur, self._sig, self._approx, nbr, parent, ori, out)
        return out

    def pyramids(self) -> np.ndarray:
        """(B, C, Hp, Wp) current approximations."""
        tk = self.tokenizer
        c = tk.image_shape[2]
        out = np.zeros((self.batch_size, c * tk.padded_shape[0] * tk.padded_shape[1]))
        out[:, tk.layout.flat] = self._approx
        return out.reshape((self.batch_size, c) + tk.padded_shape)

    def decode(self) -> np.ndarray:
        """Images of the prefixes consumed so far, like :meth:`WaveletTokenizer.decode`."""
        from .transform import synthesize
        return synthesize(self.tokenizer, self.pyramids())
