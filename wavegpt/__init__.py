"""wavegpt: a GPT-2 that speaks the wavelet language (work in progress: model and batching)."""
from .batching import batch_streams
from .configuration_wavegpt import WaveGPTConfig
from .modeling_wavegpt import WaveGPTForCausalLM

__all__ = ["WaveGPTConfig", "WaveGPTForCausalLM", "batch_streams"]
