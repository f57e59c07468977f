"""Configuration of WaveGPT: a GPT-2 that reads and writes the wavelet language."""
from __future__ import annotations

from transformers import GPT2Config

__all__ = ["WaveGPTConfig", "N_TOKENS", "PAD_ID"]

#: the 7 tokens of the wavelet language, then padding, then one id per class (+ the null class).
#: Other tokenizations (band codes, pixels; ``n_tokens`` codes) keep the layout: codes, padding,
#: classes.
N_TOKENS = 7
PAD_ID = 7


class WaveGPTConfig(GPT2Config):
    """GPT-2 settings plus the wavelet-language settings the model is tied to.

    Parameters
    ----------
    tokenizer : dict
        ``WaveletTokenizer.meta`` (the language's settings and the image shape), or for the
        other tokenizations (:mod:`wavegpt.tokenizers`) their settings with ``kind``
        (``"bandvq"`` or ``"pixel"``).
    n_tokens : int
        Size of the token alphabet: 7 for the wavelet language, the codebook or palette size
        otherwise. Input id ``n_tokens`` is padding; class ids follow.
    num_classes : int
        Class labels; id ``num_classes`` is the null class (classifier-free guidance).
    use_next_slot : bool
        Also embed the slot of the token being predicted (known from the grammar state). The
        paper feeds only the token's own slot.
    use_abs_pos : bool
        Keep GPT-2's absolute position table ``wpe``; off, the slot embeddings carry position.
    use_context : bool
        Also embed the coding context of the next decision (:mod:`wavecode.context`: the
        neighbours' and the parent's significance, the refinement index), a function of the
        prefix like the next slot.
    max_planes, max_side, max_levels : int
        Sizes of the slot embedding tables.
    exponent_min, exponent_max : int
        Range of the per-image exponent ``e`` (clipped into it).
    """

    model_type = "wavegpt"

    def __init__(self, tokenizer: dict | None = None, num_classes: int = 10,
                 n_tokens: int = N_TOKENS,
                 use_next_slot: bool = True, use_abs_pos: bool = False,
                 use_context: bool = False, max_planes: int = 16,
                 max_side: int = 32, max_levels: int = 8, exponent_min: int = -8,
                 exponent_max: int = 15, **kwargs):
        kwargs.setdefault("vocab_size", n_tokens + 1 + num_classes + 1)
        kwargs.setdefault("n_positions", 4096)
        kwargs.setdefault("n_embd", 128)
        kwargs.setdefault("n_layer", 4)
        kwargs.setdefault("n_head", 4)
        # no dropout by default: attention dropout forces PyTorch's slow "math" attention on
        # CPU, and small models on these data sets do not overfit in the budgets we train
        for key in ("attn_pdrop", "resid_pdrop", "embd_pdrop"):
            kwargs.setdefault(key, 0.0)
        # one fused kernel instead of GPT-2's five elementwise ops ("gelu_new")
        kwargs.setdefault("activation_function", "gelu_pytorch_tanh")
        kwargs.setdefault("bos_token_id", n_tokens + 1 + num_classes)
        kwargs.setdefault("eos_token_id", n_tokens)
        kwargs.setdefault("pad_token_id", n_tokens)
        super().__init__(**kwargs)
        self.tokenizer = dict(tokenizer or {})
        self.num_classes = num_classes
        self.n_tokens = n_tokens
        self.use_next_slot = use_next_slot
        self.use_abs_pos = use_abs_pos
        self.use_context = use_context
        self.max_planes = max_planes
        self.max_side = max_side
        self.max_levels = max_levels
        self.exponent_min = exponent_min
        self.exponent_max = exponent_max

    @property
    def token_kind(self) -> str:
        """``"wavelet"``, ``"bandvq"`` or ``"pixel"``: what the tokens are."""
        return self.tokenizer.get("kind", "wavelet")

    @property
    def pad_id(self) -> int:
        return self.n_tokens

    def class_token(self, label: int) -> int:
        """Input id of a class label (``num_classes`` = the null class)."""
        return self.n_tokens + 1 + int(label)
