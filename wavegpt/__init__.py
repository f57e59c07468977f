"""wavegpt: a GPT-2 that speaks the wavelet language (HF transformers conventions)."""
from .batching import batch_streams
from .configuration_wavegpt import WaveGPTConfig
from .kv_cache import StaticKVDecoder
from .modeling_wavegpt import WaveGPTForCausalLM
from .sample import cut_prefix, sample
from .train import TrainConfig, train

__all__ = ["WaveGPTConfig", "WaveGPTForCausalLM", "StaticKVDecoder", "TrainConfig", "train",
           "sample", "cut_prefix", "batch_streams"]
