"""wavecode: the 7-token wavelet language of Mattar et al. (arXiv 2406.19997), exact and fast,
and the embedded image codec built on it."""
from .codec import compress, decompress, info
from .grammar import GrammarState
from .tokenizer import (PRESETS, SLOT_FIELDS, SLOT_KINDS, TOKEN_NAMES, TokenBatch,
                        TokenizerConfig, WaveletTokenizer)
from . import _codec, _dwt, _jitcache, _lifting, _scan, context, layout

# kernels inline kernels of other modules: drop cached ones built from older sources
_jitcache.purge_stale([_codec, _dwt, _lifting, _scan, context, layout])

__version__ = "0.1.0"
__all__ = ["compress", "decompress", "info", "WaveletTokenizer", "TokenizerConfig", "TokenBatch",
           "GrammarState", "PRESETS", "TOKEN_NAMES", "SLOT_FIELDS", "SLOT_KINDS", "__version__"]
